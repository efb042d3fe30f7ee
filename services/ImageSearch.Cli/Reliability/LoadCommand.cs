using System.Collections.Concurrent;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;

namespace ImageSearch.Cli.Reliability;

/// <summary>
/// <c>bench load</c>: a bounded load run against a gateway on loopback: concurrent searches (whole
/// images and boxes) and uploads (mostly photos, some files that are not images) for a fixed time.
/// Prints throughput, p50/p99 latency per kind and every status seen; then checks that every
/// accepted upload got indexed and the gateway is healthy. Exit code 1 on any 5xx, transport error,
/// malformed answer or lost upload. Without <c>--url</c> it starts its own embedded gateway over a
/// copy of the photos (rate limits off, so the run measures work, not the limiter).
/// </summary>
internal static class LoadCommand
{
    public static Command Create()
    {
        var url = new Option<string?>("--url") { Description = "Gateway to load (default: start one over a copy of --photos)." };
        var seconds = new Option<double>("--seconds") { Description = "How long to load.", DefaultValueFactory = _ => 60 };
        var searchers = new Option<int>("--searchers") { Description = "Concurrent search clients.", DefaultValueFactory = _ => 4 };
        var uploaders = new Option<int>("--uploaders") { Description = "Concurrent upload clients.", DefaultValueFactory = _ => 1 };
        var photos = new Option<string?>("--photos") { Description = "Folder of JPEG photos for queries, uploads and the started gateway's library (default: test-data/photos or bench-dev/gallery)." };
        var apiKey = new Option<string?>("--api-key") { Description = "X-Api-Key for uploads, when the gateway has one." };
        var command = new Command("load", "Concurrent searches and uploads against a gateway for a fixed time: throughput, p99, zero 5xx.");
        foreach (var option in new Option[] { url, seconds, searchers, uploaders, photos, apiKey })
        {
            command.Options.Add(option);
        }

        command.SetAction(async (parse, ct) =>
        {
            var folder = parse.GetValue(photos) ?? DefaultPhotos();
            if (folder is null || !Directory.Exists(folder))
            {
                await Console.Error.WriteLineAsync("load: no photos; pass --photos DIR (or run ./imagesearch test once to fetch the test photos).").ConfigureAwait(false);
                return 2;
            }

            var files = Directory.GetFiles(folder, "*.jpg").Order(StringComparer.Ordinal).ToArray();
            if (parse.GetValue(url) is { } target)
            {
                return await RunAsync(new Uri(target.EndsWith('/') ? target : target + "/"), files, parse.GetValue(seconds), parse.GetValue(searchers),
                    parse.GetValue(uploaders), parse.GetValue(apiKey), ct).ConfigureAwait(false);
            }

            await using var gateway = await StartedGateway.StartAsync(files.Take(40), ct).ConfigureAwait(false);
            return await RunAsync(gateway.Address, files, parse.GetValue(seconds), parse.GetValue(searchers), parse.GetValue(uploaders), null, ct).ConfigureAwait(false);
        });
        return command;
    }

    private sealed record Sample(string Kind, int Status, double Ms, string? Problem);

    private static async Task<int> RunAsync(Uri address, string[] files, double seconds, int searchers, int uploaders, string? apiKey, CancellationToken ct)
    {
        using var http = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromMinutes(2) };
        var photos = files.Select(File.ReadAllBytes).ToArray();
        var samples = new ConcurrentBag<Sample>();
        var uploaded = new ConcurrentBag<string>();
        var runId = DateTime.UtcNow.ToString("HHmmss", CultureInfo.InvariantCulture);
        var stop = DateTime.UtcNow.AddSeconds(seconds);
        Console.WriteLine($"load: {searchers} search and {uploaders} upload clients for {seconds} s against {address} ({photos.Length} photos)");
        var started = Stopwatch.StartNew();

        var workers = Enumerable.Range(0, searchers).Select(w => Task.Run(async () =>
        {
            var rng = new Random(w);
            while (DateTime.UtcNow < stop && !ct.IsCancellationRequested)
            {
                var photo = photos[rng.Next(photos.Length)];
                using var form = new MultipartFormDataContent { { Content(photo), "image", "q.jpg" } };
                var boxed = rng.Next(3) == 0;
                if (boxed)
                {
                    form.Add(new StringContent($"{rng.Next(100)},{rng.Next(100)},{100 + rng.Next(200)},{100 + rng.Next(150)}"), "box");
                }

                samples.Add(await TimeAsync(boxed ? "search (box)" : "search", () => http.PostAsync("api/search", form, ct), CheckSearch, ct).ConfigureAwait(false));
            }
        }, ct)).Concat(Enumerable.Range(0, uploaders).Select(w => Task.Run(async () =>
        {
            var rng = new Random(1000 + w);
            for (var n = 0; DateTime.UtcNow < stop && !ct.IsCancellationRequested; n++)
            {
                // One in five is not an image: the refusal path is under load too.
                var bad = rng.Next(5) == 0;
                var bytes = bad ? System.Text.Encoding.UTF8.GetBytes("<html>not an image</html>") : photos[rng.Next(photos.Length)];
                using var request = new HttpRequestMessage(HttpMethod.Post, "api/images")
                {
                    Content = new MultipartFormDataContent { { Content(bytes), "image", $"load-{runId}-{w}-{n}.jpg" } },
                };
                if (apiKey is not null)
                {
                    request.Headers.Add("X-Api-Key", apiKey);
                }

                samples.Add(await TimeAsync(bad ? "upload (not an image)" : "upload", () => http.SendAsync(request, ct), async response =>
                {
                    if (bad)
                    {
                        return response.StatusCode == HttpStatusCode.UnsupportedMediaType ? null : $"expected 415, got {(int)response.StatusCode}";
                    }

                    if (response.StatusCode != HttpStatusCode.Accepted)
                    {
                        return null; // counted by status (429 under rate limits)
                    }

                    var body = await response.Content.ReadFromJsonAsync<JsonElement>(ct).ConfigureAwait(false);
                    uploaded.Add(body.GetProperty("images")[0].GetProperty("path").GetString()!);
                    return null;
                }, ct).ConfigureAwait(false));
            }
        }, ct))).ToList();
        await Task.WhenAll(workers).ConfigureAwait(false);
        var elapsed = started.Elapsed.TotalSeconds;

        Console.WriteLine("| requests | count | per second | p50 ms | p99 ms | statuses |");
        Console.WriteLine("|---|---|---|---|---|---|");
        foreach (var kind in samples.GroupBy(s => s.Kind).OrderBy(g => g.Key, StringComparer.Ordinal).Append(samples.GroupBy(_ => "all").Single()))
        {
            var ms = kind.Select(s => s.Ms).Order().ToArray();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {kind.Key} | {ms.Length} | {ms.Length / elapsed:F1} | {Percentile(ms, 0.50):F0} | {Percentile(ms, 0.99):F0} | {string.Join(", ", kind.GroupBy(s => s.Status).OrderBy(g => g.Key).Select(g => $"{g.Key}: {g.Count()}"))} |"));
        }

        var failures = samples.Where(s => s.Status >= 500 || s.Status == 0 || s.Problem is not null).ToList();
        foreach (var f in failures.Take(20))
        {
            Console.WriteLine($"FAILURE {f.Kind}: {(f.Status == 0 ? "no answer" : "HTTP " + f.Status)} {f.Problem}");
        }

        // Every accepted upload must end up indexed (or recorded failed with a reason: never lost).
        var lost = await WaitForUploadsAsync(http, [.. uploaded], ct).ConfigureAwait(false);
        var healthy = (await http.GetAsync("healthz", ct).ConfigureAwait(false)).IsSuccessStatusCode;
        var fiveXx = samples.Count(s => s.Status >= 500);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"load: {samples.Count} requests in {elapsed:F1} s ({samples.Count / elapsed:F1}/s), {fiveXx} 5xx, {samples.Count(s => s.Status == 0)} without an answer, " +
            $"{samples.Count(s => s.Status == 429)} rate-limited; {uploaded.Count} uploads accepted, {uploaded.Count - lost.Count} indexed, {lost.Count} not; healthy: {healthy}"));
        foreach (var path in lost.Take(10))
        {
            Console.WriteLine($"LOST upload {path}");
        }

        return failures.Count == 0 && lost.Count == 0 && healthy ? 0 : 1;
    }

    private static async Task<Sample> TimeAsync(string kind, Func<Task<HttpResponseMessage>> send, Func<HttpResponseMessage, Task<string?>> check, CancellationToken ct)
    {
        var t = Stopwatch.GetTimestamp();
        try
        {
            using var response = await send().ConfigureAwait(false);
            var problem = (int)response.StatusCode >= 400 && response.Content.Headers.ContentType?.MediaType != "application/problem+json"
                ? "error without a problem body"
                : await check(response).ConfigureAwait(false);
            return new Sample(kind, (int)response.StatusCode, Stopwatch.GetElapsedTime(t).TotalMilliseconds, problem);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !ct.IsCancellationRequested)
        {
            return new Sample(kind, 0, Stopwatch.GetElapsedTime(t).TotalMilliseconds, e.Message);
        }
    }

    private static async Task<string?> CheckSearch(HttpResponseMessage response)
    {
        if (response.StatusCode != HttpStatusCode.OK)
        {
            return null;
        }

        var hits = (await response.Content.ReadFromJsonAsync<JsonElement>().ConfigureAwait(false)).GetProperty("hits");
        var ids = hits.EnumerateArray().Select(h => h.GetProperty("id").GetString()).ToList();
        return ids.Count == 0 ? "no hits" : ids.Distinct().Count() != ids.Count ? "duplicate hits" : null;
    }

    private static async Task<List<string>> WaitForUploadsAsync(HttpClient http, string[] paths, CancellationToken ct)
    {
        var settled = new HashSet<string>(StringComparer.Ordinal);
        var deadline = DateTime.UtcNow.AddMinutes(5);
        while (settled.Count < paths.Length && DateTime.UtcNow < deadline)
        {
            foreach (var chunk in paths.Where(p => !settled.Contains(p)).Chunk(100))
            {
                var answer = await http.GetFromJsonAsync<JsonElement>("api/files?" + string.Join('&', chunk.Select(p => "path=" + Uri.EscapeDataString(p))), ct).ConfigureAwait(false);
                foreach (var f in answer.GetProperty("files").EnumerateArray().Where(f => f.GetProperty("state").GetString() is "indexed" or "failed"))
                {
                    settled.Add(f.GetProperty("path").GetString()!);
                }
            }

            if (settled.Count < paths.Length)
            {
                await Task.Delay(250, ct).ConfigureAwait(false);
            }
        }

        return [.. paths.Where(p => !settled.Contains(p))];
    }

    private static ByteArrayContent Content(byte[] bytes)
    {
        var content = new ByteArrayContent(bytes);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        return content;
    }

    private static double Percentile(double[] sorted, double p) =>
        sorted.Length == 0 ? 0 : sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Length) - 1, 0, sorted.Length - 1)];

    private static string? DefaultPhotos() =>
        new[] { Path.Combine(CliHost.RepoRoot, "test-data", "photos"), Path.Combine(CliHost.RepoRoot, "bench-dev", "gallery") }.FirstOrDefault(Directory.Exists);

    /// <summary>An embedded gateway process on a free loopback port over a temporary library, killed on dispose.</summary>
    private sealed class StartedGateway : IAsyncDisposable
    {
        private readonly Process process;
        private readonly string work;

        private StartedGateway(Process process, string work, Uri address) => (this.process, this.work, Address) = (process, work, address);

        public Uri Address { get; }

        public static async Task<StartedGateway> StartAsync(IEnumerable<string> photos, CancellationToken ct)
        {
            var work = Directory.CreateTempSubdirectory("imagesearch-load-").FullName;
            var library = Directory.CreateDirectory(Path.Combine(work, "library")).FullName;
            var count = 0;
            foreach (var photo in photos)
            {
                File.Copy(photo, Path.Combine(library, Path.GetFileName(photo)));
                count++;
            }

            var port = BenchProcesses.FreePort();
            var dll = BenchProcesses.GatewayDll;
            var psi = new ProcessStartInfo("dotnet");
            foreach (var a in new[]
                     {
                         dll, "--urls", $"http://127.0.0.1:{port}", $"--Library:Root={library}", $"--Index:Directory={Path.Combine(work, "db")}",
                         $"--Embedding:ModelsDirectory={Path.Combine(CliHost.RepoRoot, "models")}", "--RateLimit:Enabled=false", "--Logging:LogLevel:Default=Warning",
                     })
            {
                psi.ArgumentList.Add(a);
            }

            var process = BenchProcesses.StartQuiet(psi);
            var gateway = new StartedGateway(process, work, new Uri($"http://127.0.0.1:{port}/"));
            using var http = new HttpClient { BaseAddress = gateway.Address };
            var deadline = DateTime.UtcNow.AddMinutes(5);
            while (true)
            {
                if (process.HasExited || DateTime.UtcNow > deadline)
                {
                    await gateway.DisposeAsync().ConfigureAwait(false);
                    throw new InvalidOperationException($"load: the gateway did not start ({dll}); build it with ./imagesearch setup.");
                }

                try
                {
                    var status = await http.GetFromJsonAsync<JsonElement>("api/status", ct).ConfigureAwait(false);
                    if (status.GetProperty("indexed").GetInt64() == count && status.GetProperty("pending").GetInt32() == 0)
                    {
                        Console.WriteLine($"load: started a gateway at {gateway.Address} over {count} photos (indexed)");
                        return gateway;
                    }
                }
                catch (HttpRequestException)
                {
                    // Not listening yet.
                }

                await Task.Delay(200, ct).ConfigureAwait(false);
            }
        }

        public async ValueTask DisposeAsync()
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync().ConfigureAwait(false);
            }

            process.Dispose();
            Directory.Delete(work, recursive: true);
        }
    }
}
