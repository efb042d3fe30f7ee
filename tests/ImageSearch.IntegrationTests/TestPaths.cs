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
internal sealed class GatewayProcess : TestProcess
{
    private GatewayProcess(Process process, Uri address, string library, string db)
        : base(process, address, "gateway", clientTimeout: TimeSpan.FromMinutes(2), waitLimit: TimeSpan.FromMinutes(3), poll: TimeSpan.FromMilliseconds(100), timeoutLogLines: null)
    {
        Address = address;
        Library = library;
        Db = db;
    }

    public Uri Address { get; }

    public string Library { get; }

    public string Db { get; }

    /// <summary>The gateway's process id (the dotnet host runs it in process).</summary>
    public int ProcessId => Process.Id;

    /// <summary>The most resident memory the gateway has used so far (VmHWM).</summary>
    public long PeakResidentBytes => ReadStatusKilobytes("VmHWM") * 1024;

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

        var g = new GatewayProcess(Process.Start(psi)!, new Uri($"http://127.0.0.1:{port}/"), library, db);
        if (waitForHealth)
        {
            await g.WaitUntilAsync(async () => (await g.Client.GetAsync("healthz").ConfigureAwait(false)).IsSuccessStatusCode, "the gateway to answer /healthz").ConfigureAwait(false);
        }

        return g;
    }

    /// <summary>SIGKILL: no shutdown, no flush, no disposal; what is on disk is what a crash leaves.</summary>
    public Task KillAsync() => StopAsync();

    private long ReadStatusKilobytes(string field)
    {
        foreach (var line in File.ReadLines($"/proc/{Process.Id}/status"))
        {
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
            {
                return long.Parse(line.Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        throw new InvalidOperationException($"No {field} in /proc/{Process.Id}/status.");
    }
}

/// <summary>
/// A program of the solution run as its own process on a loopback port: its output kept as a log,
/// an HTTP client for it, polling for a condition, and a kill at disposal.
/// </summary>
internal abstract class TestProcess : IAsyncDisposable
{
    private readonly StringBuilder log = new();
    private readonly string label;
    private readonly TimeSpan waitLimit;
    private readonly TimeSpan poll;
    private readonly int? timeoutLogLines;

    /// <summary>Wraps a started <paramref name="process"/> (output redirected) serving at <paramref name="address"/>.</summary>
    /// <param name="process">The program, started with its standard output and error redirected.</param>
    /// <param name="address">Where it listens.</param>
    /// <param name="label">What messages call it ("gateway", "watcher service").</param>
    /// <param name="clientTimeout">Timeout of <see cref="Client"/>'s requests.</param>
    /// <param name="waitLimit">How long <see cref="WaitUntilAsync"/> polls before it gives up.</param>
    /// <param name="poll">The pause between two polls.</param>
    /// <param name="timeoutLogLines">How many of the log's last lines a timeout shows; null: all of it.</param>
    protected TestProcess(Process process, Uri address, string label, TimeSpan clientTimeout, TimeSpan waitLimit, TimeSpan poll, int? timeoutLogLines)
    {
        Process = process;
        this.label = label;
        this.waitLimit = waitLimit;
        this.poll = poll;
        this.timeoutLogLines = timeoutLogLines;
        Client = new HttpClient { BaseAddress = address, Timeout = clientTimeout };
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public HttpClient Client { get; }

    public bool HasExited => Process.HasExited;

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

    protected Process Process { get; }

    /// <summary>
    /// Polls until <paramref name="condition"/> holds. The deadline only bounds a broken run; no
    /// test outcome depends on how fast anything is.
    /// </summary>
    public async Task WaitUntilAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow + waitLimit;
        while (true)
        {
            if (Process.HasExited)
            {
                throw new InvalidOperationException($"The {label} exited ({Process.ExitCode}) while waiting for {what}:\n{Log}");
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
                // Not listening yet, or a backend briefly away.
            }

            if (DateTime.UtcNow > deadline)
            {
                var shown = timeoutLogLines is { } n
                    ? string.Join('\n', Log.Split('\n').TakeLast(n).Select(l => l.Length > 400 ? l[..400] : l))
                    : Log;
                throw new TimeoutException($"Gave up waiting for {what}. The {label}'s log:\n{shown}");
            }

            await Task.Delay(poll).ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await StopAsync().ConfigureAwait(false);
        Process.Dispose();
    }

    /// <summary>SIGKILL: no shutdown, no flush, no disposal; what is on disk is what a crash leaves.</summary>
    protected async Task StopAsync()
    {
        if (!Process.HasExited)
        {
            Process.Kill(entireProcessTree: true);
            await Process.WaitForExitAsync().ConfigureAwait(false);
        }
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
