using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;

namespace ImageSearch.Cli;

/// <summary>
/// <c>bench cluster</c>: ingestion throughput through RabbitMQ with 1, 2 and 4 workers (each a
/// separate process started by scripts/cluster.sh, as <c>./imagesearch cluster up</c> does) next
/// to the embedded mode's throughput on the same images, and gateway search latency under a
/// bounded concurrent load on loopback. Both sides use the default model (deploy/cluster.env for the cluster).
/// </summary>
internal static class ClusterBench
{
    public static async Task<int> RunAsync(string gallery, int[] workerCounts, int rounds, int clients, int searches, CancellationToken ct)
    {
        var galleryFiles = Directory.GetFiles(gallery).Order(StringComparer.Ordinal).ToArray();

        // A first drop of other photos (setup's calibration photos, none of them in the gallery) warms
        // every process before the timed drop: each compiles its code on first use, once per process,
        // which is start-up cost, not the cost of the bus. The timed drop is the gallery and the rest
        // of the calibration photos (~630 in all, ~10-15 s of ingestion): the longer the run, the less
        // the pipeline's fill and drain at both ends weigh in a throughput.
        var calibration = Directory.GetFiles(Path.Combine(CliHost.RepoRoot, ".cache", "calibration"), "*.jpg").Order(StringComparer.Ordinal).ToArray();
        var warmup = calibration.Take(WarmupImages).ToArray();
        var files = galleryFiles.Concat(calibration.Skip(WarmupImages)).ToArray();
        var work = Directory.CreateTempSubdirectory("imagesearch-cluster-bench-").FullName;
        try
        {
            // The CLI's index command: the in-process pipeline with no watcher, from a loaded model to
            // the last image indexed (the figure `./imagesearch bench` reports as end to end).
            var (_, indexOutput) = await RunAsync("dotnet", [typeof(ClusterBench).Assembly.Location, "index", gallery, "--db", Path.Combine(work, "embedded-db")], ct).ConfigureAwait(false);
            var match = System.Text.RegularExpressions.Regex.Match(indexOutput, @"indexed (\d+) images \(\d+ failed\) in ([0-9.]+) s");
            if (!match.Success)
            {
                await Console.Error.WriteLineAsync($"embedded index failed:\n{indexOutput}").ConfigureAwait(false);
                return 1;
            }

            var indexRate = galleryFiles.Length / double.Parse(match.Groups[2].Value, CultureInfo.InvariantCulture);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"embedded, `index` command on the gallery: {galleryFiles.Length} images at {indexRate:F1} images/s (model loaded before timing, no watcher)"));

            // Each round measures the embedded server and each cluster one after the other on this
            // host, whose speed drifts by 10-20% over minutes (the same work took 15 to 20 CPU
            // seconds in different runs): a cluster is compared with the embedded run of its own
            // round, every other round runs in the reverse order (so a steady drift favours neither
            // side), and the rounds' median ratio is the figure.
            Console.WriteLine("| round | mode | images/s from drop | ratio to embedded | images/s first to last indexed | ratio to embedded | queue wait p50 / p99 (ms) | search p50 / p99 (ms) at " + clients + " clients |");
            Console.WriteLine("|---|---|---|---|---|---|---|---|");
            List<string> cpuLines = [];
            var ratios = workerCounts.Distinct().ToDictionary(n => n, _ => new List<double>());
            for (var round = 1; round <= rounds; round++)
            {
                // 0 workers: the embedded server.
                int[] order = [0, .. workerCounts];
                if (round % 2 == 0)
                {
                    Array.Reverse(order);
                }

                var measured = new List<(int Workers, Measured Figures)>();
                foreach (var n in order)
                {
                    var m = n == 0
                        ? await MeasureEmbeddedAsync(Path.Combine(work, $"embedded-{round}"), warmup, files, clients, searches, ct).ConfigureAwait(false)
                        : await MeasureClusterAsync(Path.Combine(work, $"cluster-{n}-{round}"), n, warmup, files, clients, searches, ct).ConfigureAwait(false);
                    if (m is null)
                    {
                        return 1;
                    }

                    measured.Add((n, m));
                }

                var embedded = measured.Single(m => m.Workers == 0).Figures;
                foreach (var (n, m) in measured)
                {
                    var mode = n switch { 0 => "embedded (serve --watch)", 1 => "cluster, 1 worker", _ => $"cluster, {n} workers" };
                    Console.WriteLine(Row(round, mode, m, embedded));
                    cpuLines.Add(Cpu(round, mode, m));
                    if (n > 0)
                    {
                        ratios[n].Add(m.Rate / embedded.Rate);
                    }
                }
            }

            foreach (var line in cpuLines)
            {
                Console.WriteLine(line);
            }

            foreach (var (n, r) in ratios)
            {
                var sorted = r.Order().ToList();
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{n} worker{(n == 1 ? "" : "s")}, images/s from drop over the embedded server's of the same round: median {EvalCommand.Percentile(sorted, 0.5):F2} of {sorted.Count} (each: {string.Join(", ", r.Select(x => x.ToString("F2", CultureInfo.InvariantCulture)))})"));
            }

            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Every row times warm processes ({warmup.Length} other photos indexed first) ingesting {files.Length} photos: the clock starts when the images are copied into the watched folder and stops at the status's lastIndexedAt; \"first to last\" leaves out the watcher's settle delay (Library:SettleTime)."));
            return 0;
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    /// <summary>
    /// The reference for the ratios: the embedded server (`./imagesearch serve --watch`), one
    /// process, measured exactly as a cluster: the same drop into its watched folder, the same
    /// settle delay, the same status polling and the same search load.
    /// </summary>
    private static async Task<Measured> MeasureEmbeddedAsync(string dir, string[] warmup, string[] files, int clients, int searches, CancellationToken ct)
    {
        var library = Directory.CreateDirectory(Path.Combine(dir, "library")).FullName;
        var port = BenchProcesses.FreePort();
        using var server = BenchProcesses.StartQuiet(StartInfo("dotnet", [BenchProcesses.GatewayDll, "--urls", $"http://127.0.0.1:{port}", $"--Library:Root={library}", $"--Index:Directory={Path.Combine(dir, "db")}",
            $"--Embedding:ModelsDirectory={Path.Combine(CliHost.RepoRoot, "models")}"]));
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/") };
            await WaitHealthyAsync(http, server, ct).ConfigureAwait(false);
            return await MeasureAsync(http, library, warmup, files, clients, searches, () => new Dictionary<string, int> { ["server"] = server.Id }, ct).ConfigureAwait(false);
        }
        finally
        {
            server.Kill(entireProcessTree: true);
            await server.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }

    /// <summary>The cluster with <paramref name="workers"/> ingest workers (scripts/cluster.sh up), measured, then stopped; null when it did not start.</summary>
    private static async Task<Measured?> MeasureClusterAsync(string dir, int workers, string[] warmup, string[] files, int clients, int searches, CancellationToken ct)
    {
        var library = Directory.CreateDirectory(Path.Combine(dir, "library")).FullName;
        var state = Path.Combine(dir, "state");
        var port = BenchProcesses.FreePort();
        var (code, output) = await RunAsync("bash", [Path.Combine(CliHost.RepoRoot, "scripts", "cluster.sh"), "up", "--watch", library, "--workers", workers.ToString(CultureInfo.InvariantCulture),
            "--port", port.ToString(CultureInfo.InvariantCulture), "--db", Path.Combine(dir, "db"), "--state", state], ct).ConfigureAwait(false);
        try
        {
            if (code != 0)
            {
                await Console.Error.WriteLineAsync($"cluster up failed:\n{output}").ConfigureAwait(false);
                return null;
            }

            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/") };

            // Every service is up and idle with its model loaded; now the images arrive.
            await WaitForWorkersAsync(http, workers, ct).ConfigureAwait(false);
            return await MeasureAsync(http, library, warmup, files, clients, searches, () => ClusterProcesses(state), ct).ConfigureAwait(false);
        }
        finally
        {
            await RunAsync("bash", [Path.Combine(CliHost.RepoRoot, "scripts", "cluster.sh"), "down", "--state", state], CancellationToken.None).ConfigureAwait(false);
        }
    }

    private const int WarmupImages = 24;

    private static string Row(int round, string mode, Measured m, Measured embedded) => string.Create(CultureInfo.InvariantCulture,
        $"| {round} | {mode} | {m.Rate:F1} | {m.Rate / embedded.Rate:F2} | {m.Steady:F1} | {m.Steady / embedded.Steady:F2} | {m.WaitP50:F0} / {m.WaitP99:F0} | {m.SearchP50:F1} / {m.SearchP99:F1} |");

    /// <summary>CPU seconds each process spent from the drop to the last image indexed, and their sum.</summary>
    private static string Cpu(int round, string mode, Measured m) => string.Create(CultureInfo.InvariantCulture,
        $"CPU during the timed ingestion, round {round}, {mode}: {m.CpuSeconds.Values.Sum():F1} s ({string.Join(", ", m.CpuSeconds.Select(p => $"{p.Key} {p.Value:F1}"))})");

    /// <summary>The cluster's processes (scripts/cluster.sh records their pids) and its broker (the Erlang VM running on the state folder's data).</summary>
    private static Dictionary<string, int> ClusterProcesses(string state)
    {
        var processes = File.ReadAllLines(Path.Combine(state, "pids")).Select(l => l.Split(' ')).ToDictionary(p => p[1], p => int.Parse(p[0], CultureInfo.InvariantCulture));
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            try
            {
                var cmdline = File.ReadAllText(Path.Combine(dir, "cmdline"));
                if (cmdline.Contains("beam.smp", StringComparison.Ordinal) && cmdline.Contains(state, StringComparison.Ordinal) &&
                    int.TryParse(Path.GetFileName(dir), CultureInfo.InvariantCulture, out var pid))
                {
                    processes["broker"] = pid;
                }
            }
            catch (IOException)
            {
                // the process ended, or /proc/<pid> is not a process
            }
            catch (UnauthorizedAccessException)
            {
                // another user's process
            }
        }

        return processes;
    }

    /// <summary>User plus system CPU time of each process, read from /proc (0 for one that is gone).</summary>
    private static Dictionary<string, double> CpuSeconds(IReadOnlyDictionary<string, int> processes) =>
        processes.ToDictionary(p => p.Key, p =>
        {
            try
            {
                using var process = Process.GetProcessById(p.Value);
                return process.TotalProcessorTime.TotalSeconds;
            }
            catch (ArgumentException)
            {
                return 0;
            }
        });

    /// <summary>
    /// Copies <paramref name="files"/> into the watched <paramref name="library"/>, polls the status
    /// until all are indexed, then runs the search load. The clock stops at the status's
    /// lastIndexedAt (the indexer's own time of its last batch, on this machine's clock), so the
    /// status is polled only twice a second once indexing has begun: polling at the resolution the
    /// figure needs (10/s) cost the cluster, where each status answer is an HTTP hop from the gateway
    /// to the query service, about 2% of its CPU. "Steady" is the rate from the first image indexed
    /// (seen by a 100 ms poll) to the last: the watcher holds each new file until it has settled
    /// (Library:SettleTime, 1 s), a fixed delay that is latency, not throughput.
    /// </summary>
    private static async Task<Measured> MeasureAsync(HttpClient http, string library, string[] warmup, string[] files, int clients, int searches,
        Func<IReadOnlyDictionary<string, int>> processes, CancellationToken ct)
    {
        foreach (var f in warmup)
        {
            File.Copy(f, Path.Combine(library, "warmup-" + Path.GetFileName(f)));
        }

        // Every warm-up file is catalogued (indexed, or failed) and nothing is pending; two photos with
        // the same content would be one point, so the timed count starts from what is indexed now.
        long baseline;
        while (true)
        {
            var s = await http.GetFromJsonAsync<JsonElement>("api/status", ct).ConfigureAwait(false);
            baseline = s.GetProperty("indexed").GetInt64();
            if (s.GetProperty("files").GetInt64() + s.GetProperty("failed").GetInt64() >= warmup.Length && s.GetProperty("pending").GetInt64() == 0)
            {
                break;
            }

            await Task.Delay(100, ct).ConfigureAwait(false);
        }

        var pids = processes();
        var cpuBefore = CpuSeconds(pids);
        var dropped = DateTimeOffset.UtcNow;
        foreach (var f in files)
        {
            File.Copy(f, Path.Combine(library, Path.GetFileName(f)));
        }

        long firstIndexed = 0;
        DateTimeOffset? first = null;
        JsonElement status;
        while (true)
        {
            status = await http.GetFromJsonAsync<JsonElement>("api/status", ct).ConfigureAwait(false);
            var indexed = status.GetProperty("indexed").GetInt64() - baseline;
            if (indexed >= files.Length)
            {
                break;
            }

            if (first is null && indexed > 0)
            {
                (first, firstIndexed) = (DateTimeOffset.UtcNow, indexed);
            }

            await Task.Delay(first is null ? 100 : 500, ct).ConfigureAwait(false);
        }

        var cpu = CpuSeconds(pids).ToDictionary(p => p.Key, p => p.Value - cpuBefore[p.Key]);
        var done = status.GetProperty("lastIndexedAt").GetDateTimeOffset();
        var rate = files.Length / (done - dropped).TotalSeconds;
        var steady = first is { } f0 && done > f0 ? (files.Length - firstIndexed) / (done - f0).TotalSeconds : double.NaN;
        var waitP50 = status.TryGetProperty("queueWaitP50Ms", out var w50) && w50.ValueKind == JsonValueKind.Number ? w50.GetDouble() : double.NaN;
        var waitP99 = status.TryGetProperty("queueWaitP99Ms", out var w99) && w99.ValueKind == JsonValueKind.Number ? w99.GetDouble() : double.NaN;
        var (p50, p99) = await LoadAsync(http, files, clients, searches, ct).ConfigureAwait(false);
        return new Measured(rate, steady, waitP50, waitP99, p50, p99, cpu);
    }

    /// <summary>Waits until the embedded server's <c>/healthz</c> answers 200 (index open, model loaded).</summary>
    private static async Task WaitHealthyAsync(HttpClient http, Process server, CancellationToken ct)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (server.HasExited)
            {
                throw new InvalidOperationException($"The embedded server exited with code {server.ExitCode} before it was ready.");
            }

            try
            {
                using var response = await http.GetAsync("healthz", ct).ConfigureAwait(false);
                if (response.IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // not listening yet
            }

            if (deadline.Elapsed > TimeSpan.FromMinutes(5))
            {
                throw new TimeoutException("The embedded server was not healthy within 5 minutes.");
            }

            await Task.Delay(200, ct).ConfigureAwait(false);
        }
    }

    /// <summary>Waits until the broker reports <paramref name="workers"/> consumers on the ingest queue.</summary>
    private static async Task WaitForWorkersAsync(HttpClient http, int workers, CancellationToken ct)
    {
        while (true)
        {
            var status = await http.GetFromJsonAsync<JsonElement>("api/status", ct).ConfigureAwait(false);
            if (status.TryGetProperty("workers", out var w) && w.ValueKind == JsonValueKind.Number && w.GetInt32() >= workers)
            {
                return;
            }

            await Task.Delay(200, ct).ConfigureAwait(false);
        }
    }

    /// <summary>A bounded load: <paramref name="clients"/> concurrent clients, <paramref name="total"/> searches in all.</summary>
    private static async Task<(double P50, double P99)> LoadAsync(HttpClient http, string[] files, int clients, int total, CancellationToken ct)
    {
        var images = files.Take(32).Select(File.ReadAllBytes).ToArray();
        var latencies = new List<double>();
        var next = -1;
        await Task.WhenAll(Enumerable.Range(0, clients).Select(async _ =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < total)
            {
                using var form = new MultipartFormDataContent { { new ByteArrayContent(images[i % images.Length]), "image", "q.jpg" } };
                var t = Stopwatch.GetTimestamp();
                using var response = await http.PostAsync("api/search", form, ct).ConfigureAwait(false);
                response.EnsureSuccessStatusCode();
                var ms = Stopwatch.GetElapsedTime(t).TotalMilliseconds;
                lock (latencies)
                {
                    latencies.Add(ms);
                }
            }
        })).ConfigureAwait(false);
        latencies.Sort();
        return (EvalCommand.Percentile(latencies, 0.5), EvalCommand.Percentile(latencies, 0.99));
    }

    private static async Task<(int Code, string Output)> RunAsync(string program, string[] args, CancellationToken ct)
    {
        using var p = Process.Start(StartInfo(program, args))!;
        var stdout = p.StandardOutput.ReadToEndAsync(ct);
        var stderr = p.StandardError.ReadToEndAsync(ct);
        await p.WaitForExitAsync(ct).ConfigureAwait(false);
        return (p.ExitCode, await stdout.ConfigureAwait(false) + await stderr.ConfigureAwait(false));
    }

    private static ProcessStartInfo StartInfo(string program, string[] args)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = CliHost.RepoRoot };
        psi.Environment["IMAGESEARCH_SKIP_SETUP"] = "1"; // `./imagesearch bench` ran setup before starting this process

        // The load comes from one address at more searches per second than a client may send
        // (RateLimit:SearchPerSecond): the bench measures the services, not the limiter.
        psi.Environment["RateLimit__Enabled"] = "false";

        // Both sides run with the settings of deploy/cluster.env (model, ingest batching), so the
        // ratio is the cost of the bus and the extra processes, not of a different configuration.
        foreach (var line in File.ReadLines(Path.Combine(CliHost.RepoRoot, "deploy", "cluster.env")))
        {
            var eq = line.IndexOf('=', StringComparison.Ordinal);
            if (eq > 0 && !line.StartsWith('#') && !line.StartsWith("Bus__", StringComparison.Ordinal))
            {
                psi.Environment.TryAdd(line[..eq], line[(eq + 1)..]);
            }
        }

        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        return psi;
    }

    private sealed record Measured(double Rate, double Steady, double WaitP50, double WaitP99, double SearchP50, double SearchP99, IReadOnlyDictionary<string, double> CpuSeconds);
}
