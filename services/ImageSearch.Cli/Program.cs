using System.CommandLine;
using ImageSearch.Cli;

var root = new RootCommand("ImageSearch: content-based image search over a folder of photos.");
root.Subcommands.Add(IndexCommand.Create());
root.Subcommands.Add(SearchCommands.CreateSearch());
root.Subcommands.Add(SearchCommands.CreateSearchBatch());
root.Subcommands.Add(EvalCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
root.Subcommands.Add(CalibrateCommand.Create());
return await root.Parse(args).InvokeAsync().ConfigureAwait(false);
