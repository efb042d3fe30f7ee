using System.Diagnostics;
using System.Globalization;
using ImageSearch.Cli.Evaluation;

namespace ImageSearch.Cli.Peers;

/// <summary>One gateway's figures in <see cref="ContentionBench"/>.</summary>
/// <param name="Setting">Which priorities the gateway ran with.</param>
/// <param name="Idle">One client's searches with nothing else running.</param>
/// <param name="Busy">One client's searches while the gateway ingested new photos.</param>
/// <param name="AlonePhotos">Photos ingested with no searches.</param>
/// <param name="AloneRate">Images per second ingested with no searches.</param>
/// <param name="BusyPhotos">Photos ingested while the client searched.</param>
/// <param name="BusyRate">Images per second ingested while the client searched.</param>
internal sealed record ContentionFigures(string Setting, GatewayFigures Idle, GatewayFigures Busy, int AlonePhotos, double AloneRate, int BusyPhotos, double BusyRate);

/// <summary>
/// What a user feels while the library grows: search latency through the real gateway (embedded mode,
/// re-ranking on) while it ingests new photos dropped into its watched folder, and what the searches
/// cost ingestion, with the default priorities (<c>Priority</c> section) and with every kind of work at
/// the process's own level. The new photos are two thirds of the benchmark's query images (real
/// photos, distinct bytes from the gallery): one third dropped with no searches running (ingestion
/// alone), one third while one client searches back to back with the instance queries of the last
/// third.
/// </summary>
internal static class ContentionBench
{
    private static readonly (string Name, string[] Args)[] Settings =
    [
        ("default (ingestion +19)", []),
        ("one priority for all (ingestion +0)", ["--Priority:QueryModel=0", "--Priority:Ingestion=0"]),
    ];

    public static async Task<IReadOnlyList<ContentionFigures>> RunAsync(string benchRoot, int photos, CancellationToken ct)
    {
        var gallery = Directory.GetFiles(Path.Combine(benchRoot, "gallery")).Order(StringComparer.Ordinal).ToArray();

        // The query images in thirds: the searches use one third, ingestion the other two (alone,
        // then searched), so no search is for a photo indexed between the idle and busy figures.
        var files = Directory.GetFiles(Path.Combine(benchRoot, "queries")).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray();
        var third = files.Select((f, i) => (f, i % 3)).ToLookup(x => x.Item2, x => Path.Combine(benchRoot, "queries", x.f!));
        var alone = third[1].Take(photos / 2).ToArray();
        var busy = third[2].Take(photos - photos / 2).ToArray();
        var searched = third[0].Select(Path.GetFileName).ToHashSet(StringComparer.Ordinal);
        var queries = BenchmarkSet.Load(benchRoot).Instance
            .Where(q => searched.Contains(Path.GetFileName(q.QueryPath)))
            .Select(q => (Bytes: File.ReadAllBytes(Path.Combine(benchRoot, q.QueryPath)), q.Box))
            .ToArray();
        var results = new List<ContentionFigures>();
        foreach (var (name, args) in Settings)
        {
            var work = Directory.CreateTempSubdirectory("imagesearch-contention-").FullName;
            Process? gateway = null;
            try
            {
                var library = Directory.CreateDirectory(Path.Combine(work, "library")).FullName;
                foreach (var file in gallery)
                {
                    File.Copy(file, Path.Combine(library, Path.GetFileName(file)));
                }

                (gateway, var http, _) = await GatewayBench.StartAsync(library, Path.Combine(work, "db"), ["--Library:Watch=true", .. args], gallery.Length, ct).ConfigureAwait(false);
                using var client = http;
                await GatewayBench.LoadAsync(client, queries, 1, 20, rerank: true, ct).ConfigureAwait(false);
                var idle = await GatewayBench.LoadAsync(client, queries, 1, 100, rerank: true, ct).ConfigureAwait(false);

                // Ingestion alone.
                var expected = gallery.Length;
                var aloneRate = await IngestAsync(gateway, client, library, "alone", alone, expected, searching: null, ct).ConfigureAwait(false);
                expected += alone.Length;

                // Ingestion while one client searches back to back until it is done.
                var timings = new List<SearchTiming>();
                var clock = Stopwatch.StartNew();
                var busyRate = await IngestAsync(gateway, client, library, "busy", busy, expected, async token =>
                {
                    for (var i = 0; !token.IsCancellationRequested; i++)
                    {
                        var (bytes, box) = queries[i % queries.Length];
                        timings.Add(await GatewayBench.SearchOnceAsync(client, bytes, box, rerank: true, ct).ConfigureAwait(false));
                    }
                }, ct).ConfigureAwait(false);
                var during = GatewayFigures.From(1, true, timings, clock.Elapsed.TotalSeconds);
                results.Add(new ContentionFigures(name, idle, during, alone.Length, aloneRate, busy.Length, busyRate));
            }
            finally
            {
                await GatewayBench.StopAsync(gateway, work).ConfigureAwait(false);
            }
        }

        return results;
    }

    /// <summary>
    /// Copies <paramref name="files"/> into a new sub-folder of the watched library, runs
    /// <paramref name="searching"/> (if any) until they are all indexed, and returns images per second
    /// from the copy to the last one indexed.
    /// </summary>
    private static async Task<double> IngestAsync(Process gateway, HttpClient http, string library, string folder, string[] files, int before,
        Func<CancellationToken, Task>? searching, CancellationToken ct)
    {
        var target = Directory.CreateDirectory(Path.Combine(library, folder)).FullName;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var started = Stopwatch.StartNew();
        foreach (var file in files)
        {
            File.Copy(file, Path.Combine(target, Path.GetFileName(file)));
        }

        var load = searching is null ? Task.CompletedTask : Task.Run(() => searching(stop.Token), CancellationToken.None);
        try
        {
            await GatewayBench.WaitIndexedAsync(gateway, http, before + files.Length, TimeSpan.FromMinutes(10), ct).ConfigureAwait(false);
            var seconds = started.Elapsed.TotalSeconds;
            return files.Length / seconds;
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            await load.ConfigureAwait(false);
        }
    }

    /// <summary>The lines <c>bench contention</c> prints.</summary>
    internal static IEnumerable<string> Describe(IReadOnlyList<ContentionFigures> figures)
    {
        var f0 = figures[0];
        yield return string.Create(CultureInfo.InvariantCulture,
            $"one client searching (re-ranking on) while the gateway ingests {f0.BusyPhotos} new photos; {f0.AlonePhotos} others ingested with no searches first");
        yield return "| priorities | search p50 / p99 ms, idle | search p50 / p99 ms, while ingesting | searches | ingestion alone, images/s | ingestion while searched, images/s |";
        yield return "|---|---|---|---|---|---|";
        foreach (var f in figures)
        {
            yield return string.Create(CultureInfo.InvariantCulture,
                $"| {f.Setting} | {f.Idle.P50:F1} / {f.Idle.P99:F1} | {f.Busy.P50:F1} / {f.Busy.P99:F1} | {f.Busy.Searches} | {f.AloneRate:F1} | {f.BusyRate:F1} |");
        }
    }
}
