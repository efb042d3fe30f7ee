using System.CommandLine;
using System.Globalization;
using ImageSearch.Core;
using ImageSearch.Hosting;
using ImageSearch.Pipeline;
using ImageSearch.VectorStore;
using Microsoft.Extensions.Hosting;

namespace ImageSearch.Cli;

/// <summary><c>search IMAGE</c> and <c>search-batch --queries Q.tsv --out R.tsv</c>.</summary>
internal static class SearchCommands
{
    private static readonly Option<int> Top = new("--top") { Description = "Hits per query.", DefaultValueFactory = _ => 10 };
    private static readonly Option<bool> Exact = new("--exact") { Description = "Brute-force search instead of HNSW." };
    private static readonly Option<bool> Regions = new("--regions") { Description = "Without --box: also search sliding windows of the query (finds a photo shown inside a larger scene)." };
    private static readonly Option<bool> NoRerank = new("--no-rerank") { Description = "Do not re-rank the nearest neighbours by local features (SIFT + geometric verification)." };
    private static readonly Option<int> Expand = new("--expand") { Description = "Alpha query expansion with this many top neighbours (0 = off; 5 suits \"more like this\")." };
    private static readonly Option<int> Dba = new("--dba") { Description = "Database-side augmentation: re-score the top 100 with each one's vector averaged with this many of its gallery neighbours (0 = off; 3 suits \"more like this\"; Augmentation:Neighbours)." };

    public static Command CreateSearch()
    {
        var image = new Argument<string>("image") { Description = "Query image file." };
        var box = new Option<string?>("--box") { Description = "Region of the query image to search for: x,y,w,h in its pixels." };
        var command = new Command("search", "Find the images most similar to a query image.");
        command.Arguments.Add(image);
        command.Options.Add(box);
        command.Options.Add(Top);
        command.Options.Add(Exact);
        command.Options.Add(Regions);
        command.Options.Add(NoRerank);
        command.Options.Add(Expand);
        command.Options.Add(Dba);
        CliHost.AddCommon(command);
        command.SetAction(async (parse, ct) =>
        {
            var path = parse.GetValue(image)!;
            if (!File.Exists(path))
            {
                return Fail($"search: query image '{path}' does not exist.");
            }

            BoundingBox? region = null;
            if (parse.GetValue(box) is { } boxText)
            {
                try
                {
                    region = BoundingBox.Parse(boxText);
                }
                catch (FormatException e)
                {
                    return Fail("search: " + e.Message);
                }
            }

            var top = parse.GetValue(Top);
            if (top is < 1 or > SearchLimits.MaxTop)
            {
                return Fail($"search: --top must be between 1 and {SearchLimits.MaxTop}.");
            }

            if (parse.GetValue(Dba) is < 0 or > 50)
            {
                return Fail("search: --dba must be between 0 and 50.");
            }

            using var host = OpenIndex(parse, out var error);
            if (host is null)
            {
                return Fail(error!);
            }

            await host.StartAsync(ct).ConfigureAwait(false);
            try
            {
                if (await OtherModelsOnlyAsync(host, parse, ct).ConfigureAwait(false) is { } wrongModel)
                {
                    return Fail("search: " + wrongModel);
                }

                var bytes = await File.ReadAllBytesAsync(path, ct).ConfigureAwait(false);
                var result = await host.Service<SearchService>().SearchAsync(new ImageQuery(bytes, region, top, parse.GetValue(Exact), parse.GetValue(Regions), parse.GetValue(Expand), !parse.GetValue(NoRerank)), ct).ConfigureAwait(false);
                var rank = 0;
                foreach (var hit in result.Hits)
                {
                    // rank, cosine score, inliers of the local-feature verification ("-": not verified), path.
                    var inliers = hit.Inliers is { } n ? n.ToString(CultureInfo.InvariantCulture) : "-";
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{++rank,3}  {hit.Score:F4}  {inliers,4}  {hit.Payload.Path}"));
                }

                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"({result.Hits.Count} hits; embed {result.EmbedMilliseconds:F0} ms, search {result.SearchMilliseconds:F1} ms)"));
                return 0;
            }
            catch (InvalidImageException e)
            {
                return Fail($"search: cannot use '{path}': {e.Message}");
            }
            catch (ArgumentOutOfRangeException e)
            {
                return Fail($"search: {e.Message}");
            }
            finally
            {
                await host.StopAsync(CancellationToken.None).ConfigureAwait(false);
            }
        });
        return command;
    }

    public static Command CreateSearchBatch()
    {
        var queries = new Option<string>("--queries") { Description = "TSV with header: query_id, query_path (relative to the TSV's folder), box (x,y,w,h or empty).", Required = true };
        var output = new Option<string>("--out") { Description = "Results TSV: query_id, rank, image_id, score.", Required = true };
        var format = new Option<string>("--format") { Description = "tsv (default) or seed ('Q12: a.jpg, b.jpg, ...').", DefaultValueFactory = _ => "tsv" };
        format.AcceptOnlyFromAmong("tsv", "seed");
        var command = new Command("search-batch", "Run many queries from a TSV file.");
        command.Options.Add(queries);
        command.Options.Add(output);
        command.Options.Add(format);
        command.Options.Add(Top);
        command.Options.Add(Exact);
        CliHost.AddCommon(command);
        command.SetAction(async (parse, ct) =>
        {
            var qPath = parse.GetValue(queries)!;
            if (!File.Exists(qPath))
            {
                return Fail($"search-batch: '{qPath}' does not exist.");
            }

            List<BatchQuery> list;
            try
            {
                list = ReadQueries(qPath);
            }
            catch (FormatException e)
            {
                return Fail($"search-batch: {qPath}: {e.Message}");
            }

            using var host = OpenIndex(parse, out var error);
            if (host is null)
            {
                return Fail(error!);
            }

            await host.StartAsync(ct).ConfigureAwait(false);
            try
            {
                if (await OtherModelsOnlyAsync(host, parse, ct).ConfigureAwait(false) is { } wrongModel)
                {
                    return Fail("search-batch: " + wrongModel);
                }

                var results = await RunAsync(host.Service<SearchService>(), list, parse.GetValue(Top), parse.GetValue(Exact), ct).ConfigureAwait(false);
                await WriteResultsAsync(parse.GetValue(output)!, parse.GetValue(format)!, list, results, ct).ConfigureAwait(false);
                var failed = results.Count(r => r is null);
                Console.Error.WriteLine($"{list.Count} queries, {failed} failed; results in {parse.GetValue(output)}");
                return 0;
            }
            finally
            {
                await host.StopAsync(CancellationToken.None).ConfigureAwait(false);
            }
        });
        return command;
    }

    public sealed record BatchQuery(string Id, string Path, BoundingBox? Box);

    /// <summary>Reads query_id, query_path, box by header name (extra columns are ignored).</summary>
    public static List<BatchQuery> ReadQueries(string tsvPath)
    {
        var folder = Path.GetDirectoryName(Path.GetFullPath(tsvPath))!;
        var rows = Evaluation.Tsv.Read(tsvPath);
        var list = new List<BatchQuery>(rows.Count);
        var line = 1;
        foreach (var r in rows)
        {
            line++;
            if (!r.TryGetValue("query_id", out var id) || !r.TryGetValue("query_path", out var path) || id.Length == 0 || path.Length == 0)
            {
                throw new FormatException($"row {line}: needs query_id and query_path columns (header: query_id<TAB>query_path<TAB>box).");
            }

            BoundingBox? box = null;
            if (r.TryGetValue("box", out var b) && !string.IsNullOrWhiteSpace(b))
            {
                try
                {
                    box = BoundingBox.Parse(b);
                }
                catch (FormatException e)
                {
                    throw new FormatException($"row {line}: {e.Message}", e);
                }
            }

            list.Add(new BatchQuery(id, Path.Combine(folder, path), box));
        }

        return list;
    }

    /// <summary>Runs the queries in chunks (one model call each); a query that cannot be read or decoded gets null.</summary>
    public static async Task<SearchResult?[]> RunAsync(SearchService search, IReadOnlyList<BatchQuery> queries, int top, bool exact, CancellationToken ct)
    {
        const int chunk = 32;
        var results = new SearchResult?[queries.Count];
        for (var start = 0; start < queries.Count; start += chunk)
        {
            var n = Math.Min(chunk, queries.Count - start);
            var loaded = new List<(int Index, ImageQuery Query)>(n);
            for (var i = start; i < start + n; i++)
            {
                try
                {
                    var bytes = await File.ReadAllBytesAsync(queries[i].Path, ct).ConfigureAwait(false);
                    loaded.Add((i, new ImageQuery(bytes, queries[i].Box, top, exact)));
                }
                catch (IOException e)
                {
                    await Console.Error.WriteLineAsync($"query {queries[i].Id}: {e.Message}").ConfigureAwait(false);
                }
            }

            try
            {
                var batch = await search.SearchManyAsync(loaded.Select(l => l.Query).ToList(), ct).ConfigureAwait(false);
                for (var k = 0; k < loaded.Count; k++)
                {
                    results[loaded[k].Index] = batch[k];
                }
            }
            catch (InvalidImageException)
            {
                // One bad image fails the whole chunk: redo it one query at a time to isolate it.
                foreach (var (index, query) in loaded)
                {
                    try
                    {
                        results[index] = await search.SearchAsync(query, ct).ConfigureAwait(false);
                    }
                    catch (InvalidImageException e)
                    {
                        await Console.Error.WriteLineAsync($"query {queries[index].Id}: {e.Message}").ConfigureAwait(false);
                    }
                }
            }
        }

        return results;
    }

    public static async Task WriteResultsAsync(string path, string format, IReadOnlyList<BatchQuery> queries, IReadOnlyList<SearchResult?> results, CancellationToken ct)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null)
        {
            Directory.CreateDirectory(dir);
        }

        await using var writer = new StreamWriter(path);
        if (format == "tsv")
        {
            await writer.WriteLineAsync("query_id\trank\timage_id\tscore".AsMemory(), ct).ConfigureAwait(false);
        }

        for (var i = 0; i < queries.Count; i++)
        {
            var hits = results[i]?.Hits ?? [];
            if (format == "seed")
            {
                await writer.WriteLineAsync($"{queries[i].Id}: {string.Join(", ", hits.Select(h => h.Payload.Path))}".AsMemory(), ct).ConfigureAwait(false);
                continue;
            }

            var rank = 0;
            foreach (var h in hits)
            {
                await writer.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"{queries[i].Id}\t{++rank}\t{h.Payload.Path}\t{h.Score:F6}").AsMemory(), ct).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Opens the index named by --db (or the last one indexed) for querying.</summary>
    public static IHost? OpenIndex(ParseResult parse, out string? error)
    {
        var db = parse.GetValue(CliHost.Db) ?? CliHost.LastIndex();
        error = null;
        if (db is null || CliHost.RecordedLibrary(db) is not { } library)
        {
            error = db is null
                ? "No index yet: run './imagesearch index <folder>' first, or pass --db <index folder>."
                : $"'{db}' is not an index folder (run './imagesearch index <folder> --db {db}' first).";
            return null;
        }

        return CliHost.Build(parse, library, db, PipelineRoles.Query, settings =>
        {
            if (parse.GetResult(Dba) is not null && parse.GetValue(Dba) is > 0 and var neighbours)
            {
                settings[AugmentationOptions.Section + ":Neighbours"] = neighbours.ToString(CultureInfo.InvariantCulture);
            }
        });
    }

    /// <summary>
    /// The index folder holds one store per model (and calibration): searching with a model whose store
    /// is empty while stores of other models hold images would answer "no hits" for a reason the user
    /// cannot see, so that is an error naming the models the folder was indexed with.
    /// </summary>
    private static async Task<string?> OtherModelsOnlyAsync(IHost host, ParseResult parse, CancellationToken ct)
    {
        if (await host.Service<IVectorStore>().CountAsync(ct).ConfigureAwait(false) > 0)
        {
            return null;
        }

        var db = Path.GetFullPath(parse.GetValue(CliHost.Db) ?? CliHost.LastIndex()!);
        var model = host.Service<IEmbedder>().Model;
        var current = ImageSearchHosting.FolderName(model);
        var others = Directory.GetDirectories(db)
            .Select(Path.GetFileName)
            .Where(name => !name!.StartsWith(current, StringComparison.Ordinal) && EmbeddedVectorStore.HoldsPoints(Path.Combine(db, name)))
            .Order(StringComparer.Ordinal)
            .ToList();
        return others.Count == 0
            ? null
            : $"'{db}' holds no images for the model {model.Key}, only for: {string.Join(", ", others)}. " +
              $"Search with the model it was indexed with (--model {others[0]!.Split('@')[0]}), or index it again with this one.";
    }

    private static int Fail(string message)
    {
        Console.Error.WriteLine(message);
        return 2;
    }
}
