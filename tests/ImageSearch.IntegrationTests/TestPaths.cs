using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace ImageSearch.IntegrationTests;

/// <summary>Where the repository, the built programs, the models and the test photos are.</summary>
internal static class TestPaths
{
    public static string Repo { get; } = FindRepo();

    /// <summary>Release or Debug: the programs are taken from the same configuration as this test assembly.</summary>
    public static string Configuration { get; } = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Release" : "Debug";

    public static string Gateway => Program("ImageSearch.Gateway");

    public static string Cli => Program("ImageSearch.Cli");

    /// <summary>A distributed service's program: "Query", "Ingest" or "Watcher" (built with the solution).</summary>
    public static string Service(string name) => Program("ImageSearch." + name);

    public static string Models => Path.Combine(Repo, "models");

    public static string Photos => RequireDirectory(Path.Combine(Repo, "test-data", "photos"));

    public static string Variants => RequireDirectory(Path.Combine(Repo, "test-data", "variants"));

    /// <summary>The photos the variants were made from (see scripts/make-test-variants.py).</summary>
    public static readonly string[] VariantSources = ["indoors-chalkboard", "nature-flower-bed", "nature-woods-and-bench", "outdoors-city-with-water", "outdoors-school2"];

    /// <summary>Copies the variant sources plus other real photos into a new library folder.</summary>
    public static string MakeLibrary(string parent, int extra)
    {
        var library = Directory.CreateDirectory(Path.Combine(parent, "library")).FullName;
        var others = Directory.GetFiles(Photos, "*.jpg").Order(StringComparer.Ordinal)
            .Where(f => !VariantSources.Contains(Path.GetFileNameWithoutExtension(f))).Take(extra);
        foreach (var f in VariantSources.Select(s => Path.Combine(Photos, s + ".jpg")).Concat(others))
        {
            File.Copy(f, Path.Combine(library, Path.GetFileName(f)));
        }

        return library;
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Runs a built .NET program to completion and returns its exit code and output.</summary>
    public static Task<(int Code, string Stdout, string Stderr)> RunAsync(string dll, params string[] args) =>
        RunProcessAsync("dotnet", [dll, .. args]);

    /// <summary>Runs a program from the repository root to completion and returns its exit code and output.</summary>
    public static async Task<(int Code, string Stdout, string Stderr)> RunProcessAsync(string program, IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Repo };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            psi.Environment[key] = value;
        }

        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync().ConfigureAwait(false);
        return (p.ExitCode, await stdout.ConfigureAwait(false), await stderr.ConfigureAwait(false));
    }

    private static string Program(string name)
    {
        var path = Path.Combine(Repo, "services", name, "bin", Configuration, "net10.0", name + ".dll");
        return File.Exists(path) ? path : throw new FileNotFoundException($"{path} is missing: build the solution first (./imagesearch setup).");
    }

    private static string RequireDirectory(string path) =>
        Directory.Exists(path) ? path : throw new DirectoryNotFoundException($"{path} is missing: run scripts/fetch-test-data.sh (./imagesearch test does).");

    private static string FindRepo()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "ImageSearch.sln")))
            {
                return d.FullName;
            }
        }

        throw new InvalidOperationException("Repository root (ImageSearch.sln) not found above " + AppContext.BaseDirectory);
    }
}

/// <summary>A gateway process on a loopback port, with its own library and index folders.</summary>
internal sealed class GatewayProcess : IAsyncDisposable
{
    private readonly Process process;
    private readonly StringBuilder log = new();

    private GatewayProcess(Process process, Uri address, string library, string db)
    {
        this.process = process;
        Address = address;
        Library = library;
        Db = db;
        Client = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromMinutes(2) };
    }

    public Uri Address { get; }

    public string Library { get; }

    public string Db { get; }

    public HttpClient Client { get; }

    /// <summary>The gateway's process id (the dotnet host runs it in process).</summary>
    public int ProcessId => process.Id;

    public bool HasExited => process.HasExited;

    /// <summary>The most resident memory the gateway has used so far (VmHWM).</summary>
    public long PeakResidentBytes => ReadStatusKilobytes("VmHWM") * 1024;

    public string Log
    {
        get
        {
            lock (log)
            {
                return log.ToString();
            }
        }
    }

    public static Task<GatewayProcess> StartAsync(string library, string db, params string[] settings) => StartAsync(library, db, waitForHealth: true, settings);

    /// <summary>Starts a gateway; with <paramref name="waitForHealth"/>, returns once it answers /healthz.</summary>
    public static async Task<GatewayProcess> StartAsync(string library, string db, bool waitForHealth, params string[] settings)
    {
        var port = TestPaths.FreePort();
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = TestPaths.Repo };
        foreach (var a in new[]
                 {
                     TestPaths.Gateway, "--urls", $"http://127.0.0.1:{port}", $"--Library:Root={library}", $"--Index:Directory={db}",
                     $"--Embedding:ModelsDirectory={TestPaths.Models}", "--Library:SettleTime=00:00:00.2",
                 }.Concat(settings))
        {
            psi.ArgumentList.Add(a);
        }

        var p = Process.Start(psi)!;
        var g = new GatewayProcess(p, new Uri($"http://127.0.0.1:{port}/"), library, db);
        p.OutputDataReceived += (_, e) => g.Append(e.Data);
        p.ErrorDataReceived += (_, e) => g.Append(e.Data);
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        if (waitForHealth)
        {
            await g.WaitUntilAsync(async () => (await g.Client.GetAsync("healthz").ConfigureAwait(false)).IsSuccessStatusCode, "the gateway to answer /healthz").ConfigureAwait(false);
        }

        return g;
    }

    /// <summary>SIGKILL: no shutdown, no flush, no disposal; what is on disk is what a crash leaves.</summary>
    public async Task KillAsync()
    {
        if (!process.HasExited)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync().ConfigureAwait(false);
        }
    }

    private long ReadStatusKilobytes(string field)
    {
        foreach (var line in File.ReadLines($"/proc/{process.Id}/status"))
        {
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
            {
                return long.Parse(line.Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        throw new InvalidOperationException($"No {field} in /proc/{process.Id}/status.");
    }

    /// <summary>
    /// Polls until <paramref name="condition"/> holds. The deadline only bounds a broken run; no
    /// test outcome depends on how fast anything is.
    /// </summary>
    public async Task WaitUntilAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddMinutes(3);
        while (true)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"The gateway exited ({process.ExitCode}) while waiting for {what}:\n{Log}");
            }

            try
            {
                if (await condition().ConfigureAwait(false))
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"Gave up waiting for {what}. Gateway log:\n{Log}");
            }

            await Task.Delay(100).ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        if (!process.HasExited)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync().ConfigureAwait(false);
        }

        process.Dispose();
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (log)
        {
            log.AppendLine(line);
        }
    }
}
