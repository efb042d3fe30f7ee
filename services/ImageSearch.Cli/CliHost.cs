using System.CommandLine;
using ImageSearch.Hosting;
using ImageSearch.Pipeline;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace ImageSearch.Cli;

/// <summary>Options shared by the commands and the in-process host they start.</summary>
internal static class CliHost
{
    public static readonly Option<string?> Db = new("--db") { Description = "Index folder (default: a folder beside the indexed one, '<folder>.imagesearch')." };
    public static readonly Option<string?> Model = new("--model") { Description = "Embedding model: mobilenet-v2-1.4-rmac (default), inception-v3-mixed7; for the ablation also mobilenet-v2-1.4 (average pooling), -max, -gem3 (other poolings of the same map), -rmac320 (R-MAC at 320x320) and -rmac-ms (224 + 320 summed, about 3x the model time), set up on first use." };
    public static readonly Option<string?> Device = new("--device") { Description = "cpu (default) or cuda." };
    public static readonly Option<bool> Verbose = new("--verbose") { Description = "Log what the pipeline does." };

    public static void AddCommon(Command command)
    {
        command.Options.Add(Db);
        command.Options.Add(Model);
        command.Options.Add(Device);
        command.Options.Add(Verbose);
    }

    /// <summary>The repository root: where models/ lives (the CLI runs from its bin folder inside it).</summary>
    public static string RepoRoot
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "ImageSearch.sln")))
                {
                    return dir.FullName;
                }
            }

            return Directory.GetCurrentDirectory();
        }
    }

    public static string DefaultDb(string libraryRoot)
    {
        var full = Path.GetFullPath(libraryRoot).TrimEnd(Path.DirectorySeparatorChar);
        return Path.Combine(Path.GetDirectoryName(full) ?? full, Path.GetFileName(full) + ".imagesearch");
    }

    /// <summary>Builds (not starts) a host running <paramref name="roles"/> of the pipeline over the library and index.</summary>
    public static IHost Build(ParseResult parse, string libraryRoot, string db, PipelineRoles roles, Action<IDictionary<string, string?>>? configure = null)
    {
        var builder = Host.CreateApplicationBuilder();
        var settings = new Dictionary<string, string?>
        {
            ["Library:Root"] = Path.GetFullPath(libraryRoot),
            ["Library:Watch"] = "false",
            ["Index:Directory"] = Path.GetFullPath(db),
            ["Embedding:ModelsDirectory"] = Path.Combine(RepoRoot, "models"),
        };
        if (parse.GetValue(Model) is { } model)
        {
            settings["Embedding:Model"] = model;
        }

        if (parse.GetValue(Device) is { } device)
        {
            settings["Embedding:Device"] = device;
        }

        configure?.Invoke(settings);
        builder.Configuration.AddInMemoryCollection(settings);
        builder.Logging.ClearProviders();
        if (parse.GetValue(Verbose))
        {
            builder.Logging.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Information);
        }
        else
        {
            builder.Logging.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Error);
        }

        builder.AddImageSearch(roles);
        return builder.Build();
    }

    /// <summary>Reads the library root recorded in an index folder by a previous index run.</summary>
    public static string? RecordedLibrary(string db)
    {
        var file = Path.Combine(db, "library-root.txt");
        return File.Exists(file) ? File.ReadAllText(file).Trim() : null;
    }

    /// <summary>Records which folder an index covers.</summary>
    public static void RecordLibrary(string db, string libraryRoot)
    {
        Directory.CreateDirectory(db);
        File.WriteAllText(Path.Combine(db, "library-root.txt"), Path.GetFullPath(libraryRoot) + "\n");
    }

    /// <summary>Makes <paramref name="db"/> the index later commands use when no --db is given.</summary>
    public static void RememberAsDefault(string db)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(LastIndexFile)!);
        File.WriteAllText(LastIndexFile, Path.GetFullPath(db) + "\n");
    }

    /// <summary>The index most recently built by the index command on this checkout, if any.</summary>
    public static string? LastIndex() => File.Exists(LastIndexFile) ? File.ReadAllText(LastIndexFile).Trim() : null;

    private static string LastIndexFile => Path.Combine(RepoRoot, ".cache", "last-index");

    public static T Service<T>(this IHost host)
        where T : notnull => host.Services.GetRequiredService<T>();
}
