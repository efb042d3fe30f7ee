using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;
using ImageSearch.Cli.Evaluation;

namespace ImageSearch.Cli.Peers;

/// <summary>
/// One search as the client saw it (<see cref="Ms"/>) and as the server reported it: its embedding and
/// the time after it (the response), the phases after it (the response's <c>phases</c>), and the
/// request's reading and the handler's whole time (its <c>Server-Timing</c> header).
/// </summary>
internal sealed record SearchTiming(double Ms, double EmbedMs, double SearchMs, double FormMs, double HandlerMs, double KnnMs, double SiftWaitMs, double FeatureReadMs, double VerifyMs);

/// <summary>
/// The server's side of a load, each a p50 in milliseconds: reading the request, the nearest neighbours,
/// the wait for the query's own local features, reading and verifying the candidates' features, the
/// handler's whole time, and what the client measured beyond the handler (<see cref="Outside"/>: the
/// server's queues before and after the handler, sending the answer, the client's own work).
/// </summary>
internal sealed record ServerBreakdown(double Form, double Knn, double SiftWait, double FeatureRead, double Verify, double Handler, double Outside);

/// <summary>Latency of <c>POST /api/search</c> through the gateway under one load.</summary>
internal sealed record GatewayFigures(int Clients, bool Rerank, int Searches, double P50, double P99, double EmbedP50, double SearchP50, double Qps, ServerBreakdown Server)
{
    /// <summary>The figures of <paramref name="searches"/> made by <paramref name="clients"/> clients in <paramref name="seconds"/>.</summary>
    public static GatewayFigures From(int clients, bool rerank, IReadOnlyList<SearchTiming> searches, double seconds)
    {
        double P(Func<SearchTiming, double> of, double q = 0.5) => EvalCommand.Percentile(searches.Select(of).Order().ToList(), q);
        return new GatewayFigures(clients, rerank, searches.Count, P(t => t.Ms), P(t => t.Ms, 0.99), P(t => t.EmbedMs), P(t => t.SearchMs), searches.Count / seconds,
            new ServerBreakdown(P(t => t.FormMs), P(t => t.KnnMs), P(t => t.SiftWaitMs), P(t => t.FeatureReadMs), P(t => t.VerifyMs), P(t => t.HandlerMs), P(t => t.Ms - t.HandlerMs)));
    }
}

/// <summary>
/// Search latency through the real gateway process (embedded mode, as <c>./imagesearch serve</c>
/// runs it) over loopback, on a large index: a copy of the cached store of augmented views (each
/// with local features, so re-ranking verifies every candidate), plus the gallery itself, which the
/// gateway indexes at start (CNN and local features). Queries are the
/// benchmark's instance queries (real photos: crops, recompressions, rotations of gallery photos).
/// </summary>
internal static class GatewayBench
{
    /// <summary>
    /// Starts the gateway on the benchmark gallery (with a copy of the prepared store under
    /// <paramref name="storeRoot"/>/<paramref name="storeFolder"/>, or with the gallery alone when
    /// <paramref name="storeRoot"/> is null), then measures 1 and <paramref name="clients"/>
    /// concurrent clients sending <paramref name="searches"/> searches, re-ranking off and on.
    /// </summary>
    public static async Task<(IReadOnlyList<GatewayFigures> Figures, long Points, double RssBytes)> RunAsync(string? storeRoot, string storeFolder, string benchRoot,
        int searches, int clients, CancellationToken ct)
    {
        var gallery = Path.GetFullPath(Path.Combine(benchRoot, "gallery"));
        var work = Directory.CreateTempSubdirectory("imagesearch-peers-gateway-").FullName;
        Process? gateway = null;
        try
        {
            // The folder name of a local-features index: the gateway serves both ways per request.
            if (storeRoot is not null)
            {
                StoreBench.CopyDirectory(Path.Combine(storeRoot, storeFolder.Replace("+sift1", "", StringComparison.Ordinal)), Path.Combine(work, "db", storeFolder));
            }

            (gateway, var http, var points) = await StartAsync(gallery, Path.Combine(work, "db"), [], Directory.GetFiles(gallery).Length, ct).ConfigureAwait(false);
            using var client = http;

            var queries = BenchmarkSet.Load(benchRoot).Instance
                .Select(q => (Bytes: File.ReadAllBytes(Path.Combine(benchRoot, q.QueryPath)), q.Box))
                .ToArray();

            // Warm-up (first requests JIT the endpoint and fill the caches), then the measured loads.
            await LoadAsync(client, queries, 1, Math.Min(20, searches), rerank: true, ct).ConfigureAwait(false);
            var figures = new List<GatewayFigures>();
            foreach (var rerank in new[] { false, true })
            {
                figures.Add(await LoadAsync(client, queries, 1, Math.Max(20, searches / 4), rerank, ct).ConfigureAwait(false));
                figures.Add(await LoadAsync(client, queries, clients, searches, rerank, ct).ConfigureAwait(false));
            }

            gateway.Refresh();
            return (figures, points, gateway.WorkingSet64);
        }
        finally
        {
            await StopAsync(gateway, work).ConfigureAwait(false);
        }
    }

    /// <summary>Ends <paramref name="gateway"/> (if it started and still runs) and deletes its <paramref name="work"/> folder.</summary>
    internal static async Task StopAsync(Process? gateway, string work)
    {
        if (gateway is { HasExited: false })
        {
            gateway.Kill(entireProcessTree: true);
            await gateway.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
        }

        gateway?.Dispose();
        Directory.Delete(work, recursive: true);
    }

    /// <summary>
    /// Starts the embedded gateway on <paramref name="library"/> with its index in <paramref name="db"/>
    /// (plus <paramref name="extraArgs"/>) and waits until <paramref name="expectedFiles"/> files are
    /// indexed or refused. Returns the process, a client for it, and the number of indexed points.
    /// </summary>
    internal static async Task<(Process Gateway, HttpClient Http, long Points)> StartAsync(string library, string db, IEnumerable<string> extraArgs, int expectedFiles, CancellationToken ct)
    {
        var port = BenchProcesses.FreePort();
        var dll = BenchProcesses.GatewayDll;
        var psi = new ProcessStartInfo("dotnet") { WorkingDirectory = Path.GetDirectoryName(dll)! };
        foreach (var a in new[]
        {
            dll, "--urls", $"http://127.0.0.1:{port}", $"--Library:Root={library}", $"--Index:Directory={db}",
            $"--Embedding:ModelsDirectory={Path.Combine(CliHost.RepoRoot, "models")}", "--Rerank:Enabled=true", "--Logging:LogLevel:Default=Warning",
            "--RateLimit:Enabled=false", // one address sends more searches per second than a client may: the services are measured, not the limiter
            "--Upload:Enabled=false", // the library is the benchmark's gallery: nothing may write into it (not even an empty uploads folder)
        }.Concat(extraArgs))
        {
            psi.ArgumentList.Add(a);
        }

        var gateway = BenchProcesses.StartQuiet(psi);
        var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/"), Timeout = TimeSpan.FromMinutes(5) };
        try
        {
            var points = await WaitIndexedAsync(gateway, http, expectedFiles, TimeSpan.FromMinutes(10), ct).ConfigureAwait(false);
            return (gateway, http, points);
        }
        catch
        {
            http.Dispose();
            if (!gateway.HasExited)
            {
                gateway.Kill(entireProcessTree: true);
            }

            gateway.Dispose();
            throw;
        }
    }

    /// <summary>Polls <c>/api/status</c> until <paramref name="expectedFiles"/> files are indexed or refused and nothing is pending; returns the indexed points.</summary>
    internal static async Task<long> WaitIndexedAsync(Process gateway, HttpClient http, int expectedFiles, TimeSpan limit, CancellationToken ct)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            if (gateway.HasExited)
            {
                throw new InvalidOperationException($"The gateway exited with code {gateway.ExitCode} before it was ready.");
            }

            try
            {
                var status = await http.GetFromJsonAsync<JsonElement>("api/status", ct).ConfigureAwait(false);
                if (status.GetProperty("pending").GetInt32() == 0 &&
                    status.GetProperty("files").GetInt64() + status.GetProperty("failed").GetInt64() >= expectedFiles)
                {
                    return status.GetProperty("indexed").GetInt64();
                }
            }
            catch (HttpRequestException)
            {
                // not listening yet
            }

            if (deadline.Elapsed > limit)
            {
                throw new TimeoutException($"The gateway did not finish indexing {expectedFiles} files within {limit.TotalMinutes:F0} minutes.");
            }

            await Task.Delay(200, ct).ConfigureAwait(false);
        }
    }

    /// <summary><paramref name="clients"/> concurrent clients sending <paramref name="total"/> searches in all, round-robin over the queries.</summary>
    internal static async Task<GatewayFigures> LoadAsync(HttpClient http, (byte[] Bytes, string Box)[] queries, int clients, int total, bool rerank, CancellationToken ct)
    {
        var timings = new List<SearchTiming>();
        var next = -1;
        var t = Stopwatch.GetTimestamp();
        await Task.WhenAll(Enumerable.Range(0, clients).Select(async _ =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < total)
            {
                var (bytes, box) = queries[i % queries.Length];
                var timing = await SearchOnceAsync(http, bytes, box, rerank, ct).ConfigureAwait(false);
                lock (timings)
                {
                    timings.Add(timing);
                }
            }
        })).ConfigureAwait(false);
        return GatewayFigures.From(clients, rerank, timings, Stopwatch.GetElapsedTime(t).TotalSeconds);
    }

    /// <summary>One search: what the client measured and what the server reported (<see cref="SearchTiming"/>).</summary>
    internal static async Task<SearchTiming> SearchOnceAsync(HttpClient http, byte[] bytes, string box, bool rerank, CancellationToken ct)
    {
        using var form = new MultipartFormDataContent
        {
            { new ByteArrayContent(bytes), "image", "q.jpg" },
            { new StringContent(rerank ? "true" : "false"), "rerank" },
        };
        if (!string.IsNullOrEmpty(box))
        {
            form.Add(new StringContent(box), "box");
        }

        var start = Stopwatch.GetTimestamp();
        using var response = await http.PostAsync("api/search", form, ct).ConfigureAwait(false);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>(ct).ConfigureAwait(false);
        var ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        response.EnsureSuccessStatusCode();
        // The gateway under test is this build's: a missing figure is a broken server, not a zero.
        var server = response.Headers.TryGetValues("Server-Timing", out var values) ? ServerTiming.Parse(string.Join(", ", values)) : [];
        if (!server.TryGetValue("form", out var formMs) || !server.TryGetValue("total", out var handler) ||
            !body.TryGetProperty("phases", out var phases) || phases.ValueKind != JsonValueKind.Object)
        {
            throw new InvalidOperationException("The gateway's answer has no Server-Timing form and total, or no phases: is it of an older build?");
        }

        return new SearchTiming(ms, body.GetProperty("embedMs").GetDouble(), body.GetProperty("searchMs").GetDouble(), formMs, handler,
            phases.GetProperty("neighboursMs").GetDouble(), phases.GetProperty("queryFeaturesWaitMs").GetDouble(),
            phases.GetProperty("featureReadMs").GetDouble(), phases.GetProperty("verifyMs").GetDouble());
    }

    /// <summary>One line per load, as <c>bench gateway</c> prints them.</summary>
    internal static string Describe(GatewayFigures f) => string.Create(CultureInfo.InvariantCulture,
        $"{f.Clients} client{(f.Clients == 1 ? "" : "s")}, re-ranking {(f.Rerank ? "on" : "off")}: {f.Searches} searches, {f.Qps:F1}/s; p50 {f.P50:F1} ms, p99 {f.P99:F1} ms (p99/p50 {f.P99 / f.P50:F2}); server embedding p50 {f.EmbedP50:F1} ms (p50 minus it {f.P50 - f.EmbedP50:+0.0;-0.0}), after it p50 {f.SearchP50:F1} ms; {Describe(f.Server)}");

    /// <summary>The server's breakdown of a load, one clause.</summary>
    internal static string Describe(ServerBreakdown b) => string.Create(CultureInfo.InvariantCulture,
        $"server p50s: read request {b.Form:F1}, k-NN {b.Knn:F1}, wait for the query's SIFT {b.SiftWait:F1}, read features {b.FeatureRead:F1}, verify {b.Verify:F1}, handler {b.Handler:F1} ms; outside the handler {b.Outside:F1} ms");

    internal static string Ms(double v) => v.ToString("F1", CultureInfo.InvariantCulture);
}
