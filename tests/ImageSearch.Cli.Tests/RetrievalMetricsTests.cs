using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using ImageSearch.Cli.Evaluation;

namespace ImageSearch.Cli.Tests;

public sealed class RetrievalMetricsTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("metrics-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    [Fact]
    public void AveragePrecision_of_a_single_relevant_item_is_the_reciprocal_rank()
    {
        var relevant = new HashSet<string> { "b" };
        Assert.Equal(0.5, RetrievalMetrics.AveragePrecision(["a", "b", "c"], relevant, null, 1));
        Assert.Equal(0.0, RetrievalMetrics.AveragePrecision(["a", "b", "c"], relevant, 1, 1));
        Assert.Equal(0.0, RetrievalMetrics.AveragePrecision([], relevant, null, 1));
    }

    [Fact]
    public void Category_scores_drop_the_query_itself_before_scoring()
    {
        var q = new BenchQuery("c1", "gallery/a.jpg", "", "animals", new HashSet<string> { "b", "c" }, "a.jpg");
        var results = new Dictionary<string, IReadOnlyList<string>> { ["c1"] = ["a.jpg", "b", "x", "c"] };
        var scores = RetrievalMetrics.ScoreCategory([q], results, 10);
        // After dropping a.jpg: b (rank 1, P=1), x, c (rank 3, P=2/3) -> AP = (1 + 2/3) / 2.
        Assert.Equal(Math.Round((1 + 2.0 / 3) / 2, 4), scores["overall"].Means["mAP"]);
        Assert.Equal(0.4, scores["overall"].Means["P@5"]);
    }

    /// <summary>
    /// The eval command's numbers must be score.py's numbers: both score the same random results
    /// file over a benchmark laid out like build.py's, and every mean must agree.
    /// </summary>
    [Fact]
    public void Scores_agree_with_the_benchmark_scorer_on_the_same_results_file()
    {
        var scorer = FindScorer();
        var rng = new Random(1234);
        var gallery = Enumerable.Range(0, 40).Select(i => $"img{i:D2}.jpg").ToList();
        var categories = new[] { "animals", "tools", "monuments" };
        var labels = new StringBuilder("image_id\tcategory\tsource\n");
        for (var i = 0; i < gallery.Count; i++)
        {
            labels.Append(CultureInfo.InvariantCulture, $"{gallery[i]}\t{categories[i % 3]}\tsynthetic\n");
        }

        var attacks = new[] { "crop50", "jpeg10", "region", "region-nobox" };
        var instance = new StringBuilder("query_id\tquery_path\tbox\tattack\trelevant_ids\n");
        for (var i = 0; i < 24; i++)
        {
            instance.Append(CultureInfo.InvariantCulture, $"i{i}\tqueries/q{i}.jpg\t\t{attacks[i % attacks.Length]}\t{gallery[(i * 7) % gallery.Count]}\n");
        }

        var category = new StringBuilder("query_id\tquery_path\tbox\tattack\trelevant_ids\n");
        for (var i = 0; i < gallery.Count; i++)
        {
            var rel = gallery.Where((g, j) => j % 3 == i % 3 && j != i);
            category.Append(CultureInfo.InvariantCulture, $"c{i}\tgallery/{gallery[i]}\t\t\t{string.Join(',', rel)}\n");
        }

        File.WriteAllText(Path.Combine(dir, "labels.tsv"), labels.ToString());
        File.WriteAllText(Path.Combine(dir, "instance.tsv"), instance.ToString());
        File.WriteAllText(Path.Combine(dir, "category.tsv"), category.ToString());

        // Random rankings of random depth; a few queries left unanswered (total misses).
        var results = new Dictionary<string, IReadOnlyList<string>>();
        var tsv = new StringBuilder("query_id\trank\timage_id\tscore\n");
        foreach (var q in Enumerable.Range(0, 24).Select(i => $"i{i}").Concat(Enumerable.Range(0, 40).Select(i => $"c{i}")))
        {
            if (rng.Next(8) == 0)
            {
                continue;
            }

            var ranked = gallery.OrderBy(_ => rng.Next()).Take(rng.Next(1, 30)).ToList();
            results[q] = ranked;
            for (var r = 0; r < ranked.Count; r++)
            {
                tsv.Append(CultureInfo.InvariantCulture, $"{q}\t{r + 1}\t{ranked[r]}\t{1.0 - r * 0.01:F4}\n");
            }
        }

        var resultsPath = Path.Combine(dir, "results.tsv");
        File.WriteAllText(resultsPath, tsv.ToString());
        var jsonPath = Path.Combine(dir, "scores.json");
        RunScorer(scorer, dir, resultsPath, jsonPath);

        var set = BenchmarkSet.Load(dir);
        using var json = JsonDocument.Parse(File.ReadAllText(jsonPath));
        AssertSame(json.RootElement.GetProperty("instance"), RetrievalMetrics.ScoreInstance(set.Instance, results, 10));
        AssertSame(json.RootElement.GetProperty("category"), RetrievalMetrics.ScoreCategory(set.Category, results, 10));
    }

    private static void AssertSame(JsonElement expected, Dictionary<string, GroupScores> actual)
    {
        Assert.Equal(expected.EnumerateObject().Select(p => p.Name).Order(), actual.Keys.Order());
        foreach (var group in expected.EnumerateObject())
        {
            var a = actual[group.Name];
            Assert.Equal(group.Value.GetProperty("n").GetInt32(), a.N);
            Assert.Equal(group.Value.GetProperty("answered").GetInt32(), a.Answered);
            foreach (var metric in group.Value.EnumerateObject().Where(p => p.Name is not ("n" or "answered")))
            {
                Assert.True(Math.Abs(metric.Value.GetDouble() - a.Means[metric.Name]) <= 1e-4,
                    $"{group.Name}/{metric.Name}: score.py {metric.Value.GetDouble()} vs eval {a.Means[metric.Name]}");
            }
        }
    }

    private static void RunScorer(string scorer, string bench, string results, string json)
    {
        var psi = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { scorer, "--bench", bench, "--results", results, "--json", json })
        {
            psi.ArgumentList.Add(a);
        }

        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, "score.py failed: " + stderr.Result);
    }

    /// <summary>shared/bench/score.py sits beside the checkout (../shared), as on every developer machine and in CI.</summary>
    private static string FindScorer()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            var candidate = Path.Combine(d.FullName, "shared", "bench", "score.py");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        throw new FileNotFoundException("shared/bench/score.py not found beside the checkout.");
    }
}
