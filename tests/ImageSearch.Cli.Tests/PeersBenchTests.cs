using System.Numerics.Tensors;
using ImageSearch.Cli.Peers;

namespace ImageSearch.Cli.Tests;

/// <summary>The bench's own arithmetic: the truth it scores every library against, and how it reports.</summary>
public sealed class PeersBenchTests
{
    [Fact]
    public void The_blocked_exact_search_finds_the_true_top_10_best_first()
    {
        const int d = 16;
        var rng = new Random(3);
        var data = Unit(rng, 5000, d);
        var queries = Unit(rng, 70, d);
        var set = new VectorSet("test", data, 5000, queries, 70, d);
        for (var q = 0; q < 70; q++)
        {
            var scores = Enumerable.Range(0, 5000).Select(r => TensorPrimitives.Dot(queries.AsSpan(q * d, d), data.AsSpan(r * d, d))).ToArray();
            var expected = Enumerable.Range(0, 5000).OrderByDescending(r => scores[r]).Take(VectorSet.K).ToArray();
            Assert.Equal(expected, set.Truth.AsSpan(q * VectorSet.K, VectorSet.K).ToArray());
        }

        Assert.Equal(1.0, set.Recall(set.Truth.AsSpan(0, VectorSet.K).ToArray().Select(x => (long)x).ToArray(), 0));
        Assert.Equal(0.1, set.Recall([set.Truth[0], -1, -1, -1, -1, -1, -1, -1, -1, -1], 0), 10);
    }

    [Fact]
    public void Server_timing_headers_are_read_with_quoted_descriptions_and_without_durations()
    {
        var metrics = ServerTiming.Parse("form;desc=\"read, request\";dur=0.31, embed;dur=12.5, cache;desc=\"hit; warm\", total;desc=handler;dur=\"20\", bad;dur=x");
        Assert.Equal(new Dictionary<string, double> { ["form"] = 0.31, ["embed"] = 12.5, ["total"] = 20 }, metrics);
        Assert.Empty(ServerTiming.Parse(""));

        // Quoted-pairs: an escaped quote or comma stays inside the description, an escaped backslash ends it.
        Assert.Equal(new Dictionary<string, double> { ["a"] = 1, ["b"] = 2 },
            ServerTiming.Parse("a;desc=\"say \\\"hi, there\\\"\";dur=1, b;desc=\"x\\\\\";dur=2"));
    }

    [Fact]
    public void A_load_is_summarised_by_its_medians_and_the_time_outside_the_handler()
    {
        var timings = Enumerable.Range(1, 5)
            .Select(i => new SearchTiming(Ms: 10 * i, EmbedMs: 5 * i, SearchMs: 2 * i, FormMs: 0.1 * i, HandlerMs: 8 * i, KnnMs: 0.5, SiftWaitMs: 0, FeatureReadMs: i, VerifyMs: 1))
            .ToList();
        var f = GatewayFigures.From(4, rerank: true, timings, seconds: 2);
        Assert.Equal((30, 15, 6, 2.5), (f.P50, f.EmbedP50, f.SearchP50, f.Qps));
        Assert.Equal(new ServerBreakdown(Form: 0.3, Knn: 0.5, SiftWait: 0, FeatureRead: 3, Verify: 1, Handler: 24, Outside: 6), f.Server with { Form = Math.Round(f.Server.Form, 6) });
    }

    [Fact]
    public void Perturbed_copies_keep_the_real_rows_and_sit_at_the_requested_cosine()
    {
        const int d = 512;
        var rng = new Random(5);
        var real = Unit(rng, 100, d);
        var all = VectorBench.Perturbed(real, 100, 1000, d, cosine: 0.85, seed: 1);
        Assert.Equal(real, all.AsSpan(0, 100 * d).ToArray());
        var cosines = Enumerable.Range(100, 900).Select(i => TensorPrimitives.Dot(all.AsSpan(i * d, d), real.AsSpan((i - 100) % 100 * d, d))).ToArray();
        Assert.InRange(cosines.Average(), 0.83, 0.87);
        Assert.All(Enumerable.Range(100, 900), i => Assert.Equal(1f, TensorPrimitives.Norm(all.AsSpan(i * d, d)), 1e-4f));
    }

    [Fact]
    public void Any_prefix_of_the_view_rows_holds_whole_rounds_of_views_per_photo()
    {
        // Row i is view i / P of photo i % P: the first N rows hold ViewsBelow(N, p, P) views of photo p.
        const int photos = 7;
        foreach (var rows in new[] { 0, 1, 6, 7, 8, 20, 21, 100 })
        {
            var counts = new int[photos];
            for (var i = 0; i < rows; i++)
            {
                counts[i % photos]++;
            }

            Assert.Equal(counts, Enumerable.Range(0, photos).Select(p => AugmentedViews.ViewsBelow(rows, p, photos)).ToArray());
        }
    }

    [Fact]
    public void The_table_prints_the_ratio_and_decides_targets_from_both_figures()
    {
        var table = new PeersBench.Table();
        table.Add("A", "faster", 200, "peer", 100, ">= 1", (o, t) => o >= t);
        table.Add("A", "slower", 50, "peer", 100, ">= 1", (o, t) => o >= t);
        table.Add("A", "no peer", 7, "-", double.NaN);
        var lines = table.ToMarkdown().Split('\n');
        Assert.Equal("| A | faster | 200 | peer | 100 | 2.00 | >= 1: met |", lines[2]);
        Assert.Equal("| A | slower | 50.0 | peer | 100 | 0.50 | >= 1: **not met** |", lines[3]);
        Assert.Equal("| A | no peer | 7.000 | - | - | - |  |", lines[4]);
    }

    private static float[] Unit(Random rng, int rows, int d)
    {
        var v = new float[rows * d];
        for (var i = 0; i < v.Length; i++)
        {
            v[i] = (float)((rng.NextDouble() * 2) - 1);
        }

        for (var r = 0; r < rows; r++)
        {
            var row = v.AsSpan(r * d, d);
            TensorPrimitives.Divide(row, TensorPrimitives.Norm(row), row);
        }

        return v;
    }
}
