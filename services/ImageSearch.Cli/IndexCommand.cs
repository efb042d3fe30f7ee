using System.CommandLine;
using System.Diagnostics;
using ImageSearch.Core;
using ImageSearch.Pipeline;
using Spectre.Console;

namespace ImageSearch.Cli;

/// <summary><c>index DIR</c>: brings the index in step with the folder once, with a progress bar.</summary>
internal static class IndexCommand
{
    public static Command Create()
    {
        var dir = new Argument<string>("dir") { Description = "Folder of images to index (recursively)." };
        var command = new Command("index", "Index (or re-sync) a folder of images.");
        command.Arguments.Add(dir);
        CliHost.AddCommon(command);
        command.SetAction(async (parse, ct) =>
        {
            var root = parse.GetValue(dir)!;
            if (!Directory.Exists(root))
            {
                await Console.Error.WriteLineAsync($"index: folder '{root}' does not exist.").ConfigureAwait(false);
                return 2;
            }

            var db = parse.GetValue(CliHost.Db) ?? CliHost.DefaultDb(root);
            var summary = await RunAsync(parse, root, db, progress: !Console.IsOutputRedirected, ct).ConfigureAwait(false);

            // Only an explicit index run becomes the default for search; eval and bench build their own.
            CliHost.RememberAsDefault(db);
            Console.WriteLine($"indexed {summary.Indexed} images ({summary.Failed} failed) in {summary.Seconds:F1} s, {summary.Announced / Math.Max(summary.Seconds, 1e-9):F1} files/s; index: {db}");
            foreach (var f in summary.Failures.Take(20))
            {
                Console.WriteLine($"  failed: {f.Path}: {f.Reason}");
            }

            return 0;
        });
        return command;
    }

    public sealed record Summary(long Indexed, long Failed, int Announced, double Seconds, IReadOnlyList<CatalogEntry> Failures);

    /// <summary>Scans once, then waits until every announced file is indexed or failed.</summary>
    public static async Task<Summary> RunAsync(ParseResult parse, string root, string db, bool progress, CancellationToken ct,
        Action<IDictionary<string, string?>>? configure = null)
    {
        CliHost.RecordLibrary(db, root);
        using var host = CliHost.Build(parse, root, db, PipelineRoles.Ingest | PipelineRoles.Indexer | PipelineRoles.Query, configure);
        await host.StartAsync(ct).ConfigureAwait(false);
        try
        {
            // Load the model before the clock starts: a one-time cost, not part of the indexing rate.
            _ = host.Service<IEmbedder>().Model;
            var started = Stopwatch.GetTimestamp();
            var tracker = host.Service<IngestionProgress>();
            var (added, removed) = await host.Service<LibraryScanner>().ScanAsync(ct).ConfigureAwait(false);
            var total = added + removed;
            if (progress && total > 0)
            {
                await AnsiConsole.Progress()
                    .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                    .StartAsync(async ctx =>
                    {
                        var task = ctx.AddTask("indexing", maxValue: total);
                        while (tracker.Pending > 0)
                        {
                            task.Value = total - tracker.Pending;
                            await Task.Delay(100, ct).ConfigureAwait(false);
                        }

                        task.Value = total;
                    }).ConfigureAwait(false);
            }

            await tracker.WaitIdleAsync(ct).ConfigureAwait(false);
            var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
            var catalog = host.Service<ICatalog>();
            var counts = await catalog.CountsAsync(ct).ConfigureAwait(false);
            var failures = await catalog.ListAsync(FileState.Failed, 1000, ct).ConfigureAwait(false);
            var indexed = await host.Service<IVectorStore>().CountAsync(ct).ConfigureAwait(false);
            return new Summary(indexed, counts.Failed, total, seconds, failures);
        }
        finally
        {
            await host.StopAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }
}
