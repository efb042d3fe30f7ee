namespace ImageSearch.Cli.Evaluation;

/// <summary>Mean scores of one group of queries (an attack, a category, or "overall").</summary>
public sealed record GroupScores(int N, int Answered, IReadOnlyDictionary<string, double> Means);

/// <summary>
/// The metrics of shared/bench/score.py, computed the same way (a test checks both agree on one
/// results file): instance top1 / recall@k / mAP, category P@5 / P@k / mAP@k / mAP (leave-one-out).
/// </summary>
public static class RetrievalMetrics
{
    /// <summary>Sum of precision@i over the ranks i (&lt;= cutoff) holding a relevant item, divided by <paramref name="denominator"/>.</summary>
    public static double AveragePrecision(IReadOnlyList<string> ranked, IReadOnlySet<string> relevant, int? cutoff, int denominator)
    {
        if (denominator == 0)
        {
            return 0;
        }

        var hits = 0;
        var total = 0.0;
        var n = cutoff is { } c ? Math.Min(c, ranked.Count) : ranked.Count;
        for (var i = 0; i < n; i++)
        {
            if (relevant.Contains(ranked[i]))
            {
                hits++;
                total += (double)hits / (i + 1);
            }
        }

        return total / denominator;
    }

    public static Dictionary<string, GroupScores> ScoreInstance(IReadOnlyList<BenchQuery> queries, IReadOnlyDictionary<string, IReadOnlyList<string>> results, int k)
    {
        var per = new Dictionary<string, List<Dictionary<string, double>>>(StringComparer.Ordinal);
        var answered = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var q in queries)
        {
            var has = results.TryGetValue(q.QueryId, out var ranked);
            ranked ??= [];
            var m = new Dictionary<string, double>
            {
                ["top1"] = ranked.Count > 0 && q.Relevant.Contains(ranked[0]) ? 1 : 0,
                [$"recall@{k}"] = ranked.Take(k).Any(q.Relevant.Contains) ? 1 : 0,
                ["mAP"] = AveragePrecision(ranked, q.Relevant, null, q.Relevant.Count),
            };
            Add(per, answered, q.Group, m, has);
            if (q.Group != BenchmarkSet.Control)
            {
                Add(per, answered, "overall", m, has);
            }
        }

        return Summarise(per, answered);
    }

    public static Dictionary<string, GroupScores> ScoreCategory(IReadOnlyList<BenchQuery> queries, IReadOnlyDictionary<string, IReadOnlyList<string>> results, int k)
    {
        var per = new Dictionary<string, List<Dictionary<string, double>>>(StringComparer.Ordinal);
        var answered = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var q in queries)
        {
            var has = results.TryGetValue(q.QueryId, out var all);
            var ranked = (all ?? []).Where(i => i != q.Self).ToList();
            var m = new Dictionary<string, double>
            {
                ["P@5"] = ranked.Take(5).Count(q.Relevant.Contains) / 5.0,
                [$"P@{k}"] = ranked.Take(k).Count(q.Relevant.Contains) / (double)k,
                [$"mAP@{k}"] = AveragePrecision(ranked, q.Relevant, k, Math.Min(q.Relevant.Count, k)),
                ["mAP"] = AveragePrecision(ranked, q.Relevant, null, q.Relevant.Count),
            };
            Add(per, answered, q.Group, m, has);
            Add(per, answered, "overall", m, has);
        }

        return Summarise(per, answered);
    }

    private static void Add(Dictionary<string, List<Dictionary<string, double>>> per, Dictionary<string, int> answered, string group, Dictionary<string, double> m, bool has)
    {
        if (!per.TryGetValue(group, out var list))
        {
            per[group] = list = [];
            answered[group] = 0;
        }

        list.Add(m);
        if (has)
        {
            answered[group]++;
        }
    }

    // score.py rounds each mean to 4 decimals; so do we, so the two print the same numbers.
    private static Dictionary<string, GroupScores> Summarise(Dictionary<string, List<Dictionary<string, double>>> per, Dictionary<string, int> answered) =>
        per.ToDictionary(p => p.Key, p => new GroupScores(p.Value.Count, answered[p.Key],
            p.Value[0].Keys.ToDictionary(key => key, key => Math.Round(p.Value.Average(m => m[key]), 4, MidpointRounding.ToEven))));
}
