using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using ImageSearch.Cli.Evaluation;
using ImageSearch.Core;
using ImageSearch.Pipeline;

namespace ImageSearch.Cli;

/// <summary>
/// <c>eval --bench DIR</c>: indexes the benchmark's gallery, runs every query one at a time (so the
/// latency is the end-to-end latency of a single query: read, decode, embed, search) and prints the
/// scores exactly as shared/bench/score.py computes them.
/// </summary>
internal static class EvalCommand
{
    public static Command Create()
    {
        var bench = new Option<string>("--bench") { Description = "Benchmark folder made by shared/bench/build.py.", Required = true };
        var depth = new Option<int>("--depth") { Description = "Results kept per query.", DefaultValueFactory = _ => 100 };
        var k = new Option<int>("--k") { Description = "Cutoff for recall@k, P@k, mAP@k.", DefaultValueFactory = _ => 10 };
        var output = new Option<string?>("--out") { Description = "Also write the results TSV here (score it with score.py)." };
        var expand = new Option<int>("--expand") { Description = "Alpha query expansion with this many top neighbours (0 = off)." };
        var regions = new Option<bool>("--regions") { Description = "Region mode for queries without a box: also search sliding windows of the query." };
        var noRerank = new Option<bool>("--no-rerank") { Description = "Do not re-rank the nearest neighbours by local features (SIFT + geometric verification)." };
        var dba = new Option<int>("--dba") { Description = "Database-side augmentation: re-score the top candidates with each one's vector averaged with this many of its gallery neighbours (0 = off; Augmentation:Neighbours)." };
        var command = new Command("eval", "Score retrieval quality and latency on a benchmark.");
        command.Options.Add(bench);
        command.Options.Add(depth);
        command.Options.Add(k);
        command.Options.Add(output);
        command.Options.Add(regions);
        command.Options.Add(expand);
        command.Options.Add(noRerank);
        command.Options.Add(dba);
        CliHost.AddCommon(command);
        command.SetAction(async (parse, ct) =>
        {
            var root = parse.GetValue(bench)!;
            if (!File.Exists(Path.Combine(root, "labels.tsv")))
            {
                await Console.Error.WriteLineAsync($"eval: '{root}' is not a benchmark folder (no labels.tsv); build one with shared/bench/build.py.").ConfigureAwait(false);
                return 2;
            }

            var set = BenchmarkSet.Load(root);
            var gallery = Path.Combine(root, "gallery");
            var db = parse.GetValue(CliHost.Db) ?? CliHost.DefaultDb(gallery) + "-" + (parse.GetValue(CliHost.Model) ?? "default");
            var summary = await IndexCommand.RunAsync(parse, gallery, db, progress: false, ct).ConfigureAwait(false);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"gallery: {summary.Indexed} images indexed ({summary.Failed} failed) in {summary.Seconds:F1} s; index {db}"));

            using var host = CliHost.Build(parse, gallery, db, PipelineRoles.Query, settings =>
            {
                if (parse.GetValue(dba) is > 0 and var neighbours)
                {
                    settings[AugmentationOptions.Section + ":Neighbours"] = neighbours.ToString(CultureInfo.InvariantCulture);
                }
            });
            await host.StartAsync(ct).ConfigureAwait(false);
            try
            {
                var search = host.Service<SearchService>();
                var queries = set.Instance.Concat(set.Category).ToList();
                var ranked = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
                var latencies = new List<double>(queries.Count);
                var searchLatencies = new List<double>(queries.Count);
                var rows = new StringBuilder("query_id\trank\timage_id\tscore\n");
                var top = parse.GetValue(depth);
                foreach (var q in queries)
                {
                    var (result, milliseconds) = await RunTimedAsync(search, root, q, top, ct, parse.GetValue(regions), parse.GetValue(expand), !parse.GetValue(noRerank)).ConfigureAwait(false);
                    latencies.Add(milliseconds);
                    searchLatencies.Add(result.SearchMilliseconds);
                    ranked[q.QueryId] = result.Hits.Select(h => h.Payload.Path).ToList();
                    var rank = 0;
                    foreach (var h in result.Hits)
                    {
                        rows.Append(CultureInfo.InvariantCulture, $"{q.QueryId}\t{++rank}\t{h.Payload.Path}\t{h.Score:F6}\n");
                    }
                }

                var cutoff = parse.GetValue(k);
                Console.WriteLine($"model {search.Model.Key} | bench {root} | gallery {set.Gallery.Count} | queries {queries.Count} | dba {parse.GetValue(dba)}");
                if (set.Instance.Count > 0)
                {
                    Console.WriteLine(Table("instance retrieval (relevant = the original)", RetrievalMetrics.ScoreInstance(set.Instance, ranked, cutoff)));
                }

                if (set.Category.Count > 0)
                {
                    Console.WriteLine(Table("category retrieval (leave-one-out)", RetrievalMetrics.ScoreCategory(set.Category, ranked, cutoff)));
                }

                latencies.Sort();
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"query latency (read+decode+embed+search, one at a time): p50 {Percentile(latencies, 0.50):F1} ms, p99 {Percentile(latencies, 0.99):F1} ms"));

                // The part after the embedding (k-NN, augmentation, re-ranking): what those options cost, without the model's share of the noise.
                searchLatencies.Sort();
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"search stage (k-NN + augmentation + re-ranking): p50 {Percentile(searchLatencies, 0.50):F1} ms, p99 {Percentile(searchLatencies, 0.99):F1} ms"));
                if (parse.GetValue(output) is { } outPath)
                {
                    await File.WriteAllTextAsync(outPath, rows.ToString(), ct).ConfigureAwait(false);
                    Console.WriteLine($"results: {outPath}");
                }

                return 0;
            }
            finally
            {
                await host.StopAsync(CancellationToken.None).ConfigureAwait(false);
            }
        });
        return command;
    }

    /// <summary>One benchmark query, end to end in the process: read the file, decode, crop to its box, embed, k-NN.</summary>
    public static async Task<(SearchResult Result, double Milliseconds)> RunTimedAsync(SearchService search, string benchRoot, BenchQuery query, int top, CancellationToken ct, bool regions = false, int expand = 0, bool rerank = true)
    {
        var t = Stopwatch.GetTimestamp();
        var bytes = await File.ReadAllBytesAsync(Path.Combine(benchRoot, query.QueryPath), ct).ConfigureAwait(false);
        var box = string.IsNullOrEmpty(query.Box) ? (BoundingBox?)null : BoundingBox.Parse(query.Box);
        var result = await search.SearchAsync(new ImageQuery(bytes, box, top, Regions: regions, Expand: expand, Rerank: rerank), ct).ConfigureAwait(false);
        return (result, Stopwatch.GetElapsedTime(t).TotalMilliseconds);
    }

    public static double Percentile(IReadOnlyList<double> sorted, double p) =>
        sorted.Count == 0 ? 0 : sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Count) - 1, 0, sorted.Count - 1)];

    /// <summary>The same layout as score.py's tables.</summary>
    public static string Table(string title, IReadOnlyDictionary<string, GroupScores> scores)
    {
        var keys = scores["overall"].Means.Keys.ToList();
        var sb = new StringBuilder(title).Append('\n');
        sb.Append(CultureInfo.InvariantCulture, $"  {"",-22} {"n",5} {"answered",8} ").AppendJoin(' ', keys.Select(c => $"{c,9}")).Append('\n');
        foreach (var name in scores.Keys.OrderBy(a => a == "overall").ThenBy(a => a == BenchmarkSet.Control).ThenBy(a => a, StringComparer.Ordinal))
        {
            var s = scores[name];
            var label = name + (name == BenchmarkSet.Control ? " (control)" : "");
            label = label.Length > 22 ? label[..22] : label;
            sb.Append(CultureInfo.InvariantCulture, $"  {label,-22} {s.N,5} {s.Answered,8} ")
              .AppendJoin(' ', keys.Select(c => string.Create(CultureInfo.InvariantCulture, $"{s.Means.GetValueOrDefault(c),9:F3}"))).Append('\n');
        }

        return sb.ToString().TrimEnd('\n');
    }
}
