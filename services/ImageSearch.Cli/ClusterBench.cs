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
    public static async Task<int> RunAsync(string gallery, int[] workerCounts, int clients, int searches, CancellationToken ct)
    {
        var files = Directory.GetFiles(gallery).Order(StringComparer.Ordinal).ToArray();
        var work = Directory.CreateTempSubdirectory("imagesearch-cluster-bench-").FullName;
        try
        {
            // Embedded reference: the same images through the in-process pipeline (the CLI's index
            // command, which times from a loaded model to the last image indexed).
            var (_, indexOutput) = await RunAsync("dotnet", [typeof(ClusterBench).Assembly.Location, "index", gallery, "--db", Path.Combine(work, "embedded-db")], ct).ConfigureAwait(false);
            var match = System.Text.RegularExpressions.Regex.Match(indexOutput, @"indexed (\d+) images \(\d+ failed\) in ([0-9.]+) s");
            if (!match.Success)
            {
                await Console.Error.WriteLineAsync($"embedded index failed:\n{indexOutput}").ConfigureAwait(false);
                return 1;
            }

            var embeddedRate = files.Length / double.Parse(match.Groups[2].Value, CultureInfo.InvariantCulture);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"embedded: {files.Length} images at {embeddedRate:F1} images/s (model loaded before timing)"));
            Console.WriteLine("| workers | images/s from drop | ratio to embedded | images/s first to last indexed | ratio to embedded | queue wait p50 / p99 (ms) | search p50 / p99 (ms) at " + clients + " clients |");
            Console.WriteLine("|---|---|---|---|---|---|---|");
            foreach (var n in workerCounts)
            {
                var library = Directory.CreateDirectory(Path.Combine(work, $"library-{n}")).FullName;
                var state = Path.Combine(work, $"state-{n}");
                var port = FreePort();
                var (code, output) = await RunAsync("bash", [Path.Combine(CliHost.RepoRoot, "scripts", "cluster.sh"), "up", "--watch", library, "--workers", n.ToString(CultureInfo.InvariantCulture),
                    "--port", port.ToString(CultureInfo.InvariantCulture), "--db", Path.Combine(work, $"db-{n}"), "--state", state], ct).ConfigureAwait(false);
                try
                {
                    if (code != 0)
                    {
                        await Console.Error.WriteLineAsync($"cluster up failed:\n{output}").ConfigureAwait(false);
                        return 1;
                    }

                    using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/") };

                    // Every service is up and idle with its model loaded; now the images arrive.
                    await WaitForWorkersAsync(http, n, ct).ConfigureAwait(false);
                    var up = Stopwatch.GetTimestamp();
                    foreach (var f in files)
                    {
                        File.Copy(f, Path.Combine(library, Path.GetFileName(f)));
                    }

                    // Also note when the first image is indexed: the watcher holds each new file until it has
                    // settled (Library:SettleTime, 1 s), a fixed delay that is latency, not bus overhead.
                    long indexed, firstIndexed = 0;
                    var first = 0L;
                    while ((indexed = (await http.GetFromJsonAsync<JsonElement>("api/status", ct).ConfigureAwait(false)).GetProperty("indexed").GetInt64()) < files.Length)
                    {
                        if (first == 0 && indexed > 0)
                        {
                            (first, firstIndexed) = (Stopwatch.GetTimestamp(), indexed);
                        }

                        await Task.Delay(100, ct).ConfigureAwait(false);
                    }

                    var seconds = Stopwatch.GetElapsedTime(up).TotalSeconds;
                    var rate = files.Length / seconds;
                    var steady = first == 0 ? double.NaN : (files.Length - firstIndexed) / Stopwatch.GetElapsedTime(first).TotalSeconds;
                    var status = await http.GetFromJsonAsync<JsonElement>("api/status", ct).ConfigureAwait(false);
                    var waitP50 = status.TryGetProperty("queueWaitP50Ms", out var w50) && w50.ValueKind == JsonValueKind.Number ? w50.GetDouble() : double.NaN;
                    var waitP99 = status.TryGetProperty("queueWaitP99Ms", out var w99) && w99.ValueKind == JsonValueKind.Number ? w99.GetDouble() : double.NaN;
                    var (p50, p99) = await LoadAsync(http, files, clients, searches, ct).ConfigureAwait(false);
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {n} | {rate:F1} | {rate / embeddedRate:F2} | {steady:F1} | {steady / embeddedRate:F2} | {waitP50:F0} / {waitP99:F0} | {p50:F1} / {p99:F1} |"));
                }
                finally
                {
                    await RunAsync("bash", [Path.Combine(CliHost.RepoRoot, "scripts", "cluster.sh"), "down", "--state", state], CancellationToken.None).ConfigureAwait(false);
                }
            }

            Console.WriteLine("Both sides time from loaded models to the last image indexed; the cluster's clock starts when the images are dropped into the watched folder.");
            return 0;
        }
        finally
        {
            Directory.Delete(work, recursive: true);
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
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = CliHost.RepoRoot };
        psi.Environment["IMAGESEARCH_SKIP_SETUP"] = "1"; // `./imagesearch bench` ran setup before starting this process

        // The load comes from one address at more searches per second than a client may send
        // (RateLimit:SearchPerSecond): the bench measures the services, not the limiter.
        psi.Environment["RateLimit__Enabled"] = "false";
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync(ct);
        var stderr = p.StandardError.ReadToEndAsync(ct);
        await p.WaitForExitAsync(ct).ConfigureAwait(false);
        return (p.ExitCode, await stdout.ConfigureAwait(false) + await stderr.ConfigureAwait(false));
    }

    private static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }
}
