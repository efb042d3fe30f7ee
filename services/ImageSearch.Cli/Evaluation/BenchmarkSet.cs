namespace ImageSearch.Cli.Evaluation;

/// <summary>One query of a benchmark made by shared/bench/build.py.</summary>
/// <param name="QueryId">Query id.</param>
/// <param name="QueryPath">Query image, relative to the benchmark folder.</param>
/// <param name="Box">x,y,w,h or empty.</param>
/// <param name="Group">Attack (instance) or category.</param>
/// <param name="Relevant">Relevant gallery ids.</param>
/// <param name="Self">For category queries: the gallery image the query is (dropped from its own results).</param>
public sealed record BenchQuery(string QueryId, string QueryPath, string Box, string Group, IReadOnlySet<string> Relevant, string? Self);

/// <summary>
/// A benchmark folder: gallery/ + labels.tsv + instance.tsv + category.tsv, read exactly as
/// shared/bench/score.py reads them.
/// </summary>
public sealed class BenchmarkSet
{
    /// <summary>The region query without its box: reported, not counted in "overall".</summary>
    public const string Control = "region-nobox";

    private BenchmarkSet(string root, IReadOnlyList<string> gallery, IReadOnlyList<BenchQuery> instance, IReadOnlyList<BenchQuery> category)
    {
        Root = root;
        Gallery = gallery;
        Instance = instance;
        Category = category;
    }

    public string Root { get; }

    public IReadOnlyList<string> Gallery { get; }

    public IReadOnlyList<BenchQuery> Instance { get; }

    public IReadOnlyList<BenchQuery> Category { get; }

    public static BenchmarkSet Load(string root)
    {
        var labels = Tsv.Read(Path.Combine(root, "labels.tsv"));
        var gallery = labels.Select(r => r["image_id"]).ToList();
        var categoryOf = labels.ToDictionary(r => r["image_id"], r => r.GetValueOrDefault("category") ?? "");
        return new BenchmarkSet(root, gallery, ReadQueries(root, "instance", r => r["attack"], categoryOf),
            ReadQueries(root, "category", _ => "", categoryOf));
    }

    private static List<BenchQuery> ReadQueries(string root, string name, Func<Dictionary<string, string>, string> group, Dictionary<string, string> categoryOf)
    {
        var path = Path.Combine(root, name + ".tsv");
        if (!File.Exists(path))
        {
            return [];
        }

        var list = new List<BenchQuery>();
        foreach (var r in Tsv.Read(path))
        {
            var queryPath = r["query_path"];
            var self = queryPath.StartsWith("gallery/", StringComparison.Ordinal) ? queryPath["gallery/".Length..] : null;
            var g = name == "category" ? (self is not null && categoryOf.TryGetValue(self, out var c) && c.Length > 0 ? c : "?") : group(r);
            var relevant = r["relevant_ids"].Split(',', StringSplitOptions.RemoveEmptyEntries).ToHashSet(StringComparer.Ordinal);
            list.Add(new BenchQuery(r["query_id"], queryPath, r.GetValueOrDefault("box") ?? "", g, relevant, self));
        }

        return list;
    }
}

/// <summary>Header-keyed TSV rows, as Python's zip(header, fields) gives them.</summary>
public static class Tsv
{
    public static List<Dictionary<string, string>> Read(string path)
    {
        using var reader = new StreamReader(path);
        var header = (reader.ReadLine() ?? "").TrimEnd('\r').Split('\t');
        var rows = new List<Dictionary<string, string>>();
        while (reader.ReadLine() is { } line)
        {
            if (string.IsNullOrWhiteSpace(line))
            {
                continue;
            }

            var fields = line.TrimEnd('\r').Split('\t');
            var row = new Dictionary<string, string>(StringComparer.Ordinal);
            for (var i = 0; i < Math.Min(header.Length, fields.Length); i++)
            {
                row[header[i]] = fields[i];
            }

            rows.Add(row);
        }

        return rows;
    }
}
