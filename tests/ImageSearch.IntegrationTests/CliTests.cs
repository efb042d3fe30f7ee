using System.Globalization;

namespace ImageSearch.IntegrationTests;

/// <summary>A library indexed once by the CLI (a separate process), then queried by later processes.</summary>
public sealed class CliIndexFixture : IAsyncLifetime
{
    public string Root { get; } = Directory.CreateTempSubdirectory("cli-").FullName;

    public string Library { get; private set; } = "";

    public string Db => Path.Combine(Root, "db");

    public string IndexOutput { get; private set; } = "";

    public async Task InitializeAsync()
    {
        Library = TestPaths.MakeLibrary(Root, 10);
        await File.WriteAllBytesAsync(Path.Combine(Library, "broken.jpg"), await File.ReadAllBytesAsync(Path.Combine(TestPaths.Variants, "broken-truncated.jpg")).ConfigureAwait(false)).ConfigureAwait(false);
        var (code, stdout, stderr) = await TestPaths.RunAsync(TestPaths.Cli, "index", Library, "--db", Db).ConfigureAwait(false);
        Assert.True(code == 0, stderr);
        IndexOutput = stdout;
    }

    public Task DisposeAsync()
    {
        Directory.Delete(Root, recursive: true);
        return Task.CompletedTask;
    }
}

public sealed class CliTests(CliIndexFixture fixture) : IClassFixture<CliIndexFixture>
{
    [Fact]
    public void Index_reports_what_it_indexed_and_what_failed()
    {
        Assert.Contains("indexed 15 images (1 failed)", fixture.IndexOutput, StringComparison.Ordinal);
        Assert.Contains("failed: broken.jpg", fixture.IndexOutput, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Indexing_again_is_a_no_op()
    {
        var (code, stdout, stderr) = await TestPaths.RunAsync(TestPaths.Cli, "index", fixture.Library, "--db", fixture.Db);
        Assert.True(code == 0, stderr);
        Assert.Contains("indexed 15 images (1 failed)", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Search_finds_the_source_of_a_cropped_copy_at_rank_1()
    {
        var (code, stdout, stderr) = await TestPaths.RunAsync(TestPaths.Cli, "search", Path.Combine(TestPaths.Variants, "nature-woods-and-bench.crop50.jpg"), "--db", fixture.Db, "--top", "3");
        Assert.True(code == 0, stderr);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, lines.Length);
        Assert.EndsWith("nature-woods-and-bench.jpg", lines[0].Trim(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Search_with_a_box_finds_the_pasted_photo()
    {
        var box = (await File.ReadAllTextAsync(Path.Combine(TestPaths.Variants, "outdoors-city-with-water.in-scene.box"))).Trim();
        var (code, stdout, stderr) = await TestPaths.RunAsync(TestPaths.Cli, "search", Path.Combine(TestPaths.Variants, "outdoors-city-with-water.in-scene.jpg"), "--box", box, "--db", fixture.Db);
        Assert.True(code == 0, stderr);
        Assert.EndsWith("outdoors-city-with-water.jpg", stdout.Split('\n')[0].Trim(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Search_verifies_the_pasted_photo_by_local_features_unless_told_not_to()
    {
        // Without its box, the scene's CNN vector resembles the scene; re-ranking by SIFT matches
        // finds the pasted photo and shows its inlier count (columns: rank, score, inliers, path).
        var scene = Path.Combine(TestPaths.Variants, "outdoors-city-with-water.in-scene.jpg");
        var (code, stdout, stderr) = await TestPaths.RunAsync(TestPaths.Cli, "search", scene, "--db", fixture.Db, "--top", "15");
        Assert.True(code == 0, stderr);
        var reranked = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).ToList();
        var verified = reranked.FindIndex(l => l.EndsWith(" outdoors-city-with-water.jpg", StringComparison.Ordinal));
        Assert.True(verified >= 0, stdout);
        Assert.True(int.Parse(reranked[verified].Split(' ', StringSplitOptions.RemoveEmptyEntries)[2], CultureInfo.InvariantCulture) >= 8, stdout);

        (code, stdout, stderr) = await TestPaths.RunAsync(TestPaths.Cli, "search", scene, "--db", fixture.Db, "--top", "15", "--no-rerank");
        Assert.True(code == 0, stderr);
        var plain = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).ToList();
        Assert.All(plain, l => Assert.Equal("-", l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[2]));
        Assert.True(verified < plain.FindIndex(l => l.EndsWith("outdoors-city-with-water.jpg", StringComparison.Ordinal)), stdout);
    }

    [Fact]
    public async Task Search_with_query_expansion_keeps_the_source_first_and_refuses_a_bad_count()
    {
        var crop = Path.Combine(TestPaths.Variants, "nature-woods-and-bench.crop50.jpg");
        var (code, stdout, stderr) = await TestPaths.RunAsync(TestPaths.Cli, "search", crop, "--db", fixture.Db, "--top", "3", "--expand", "5");
        Assert.True(code == 0, stderr);
        Assert.EndsWith(" nature-woods-and-bench.jpg", stdout.Split('\n')[0].Trim(), StringComparison.Ordinal);

        (code, _, stderr) = await TestPaths.RunAsync(TestPaths.Cli, "search", crop, "--db", fixture.Db, "--expand", "99");
        Assert.NotEqual(0, code);
        Assert.Contains("expand must be between 0 and 50", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Search_with_database_side_augmentation_rescores_the_candidates_keeps_the_source_first_and_refuses_a_bad_count()
    {
        var crop = Path.Combine(TestPaths.Variants, "nature-woods-and-bench.crop50.jpg");
        var (code, stdout, stderr) = await TestPaths.RunAsync(TestPaths.Cli, "search", crop, "--db", fixture.Db, "--top", "15", "--no-rerank");
        Assert.True(code == 0, stderr);
        var plain = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).ToList();

        (code, stdout, stderr) = await TestPaths.RunAsync(TestPaths.Cli, "search", crop, "--db", fixture.Db, "--top", "15", "--no-rerank", "--dba", "3");
        Assert.True(code == 0, stderr);
        var augmented = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).ToList();
        Assert.EndsWith(" nature-woods-and-bench.jpg", augmented[0].Trim(), StringComparison.Ordinal);

        // Same candidates (augmentation re-scores, it does not search further), other scores: each is
        // the query's cosine with the candidate averaged with its neighbours, no longer the plain cosine.
        static string PathOf(string line) => line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[3];
        static string ScoreOf(string line) => line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1];
        Assert.Equal(plain.Select(PathOf).Order(StringComparer.Ordinal), augmented.Select(PathOf).Order(StringComparer.Ordinal));
        Assert.NotEqual(plain.Select(ScoreOf), augmented.Select(ScoreOf));

        (code, _, stderr) = await TestPaths.RunAsync(TestPaths.Cli, "search", crop, "--db", fixture.Db, "--dba", "99");
        Assert.NotEqual(0, code);
        Assert.Contains("--dba must be between 0 and 50", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Search_batch_writes_ranked_results_in_both_formats()
    {
        var dir = Directory.CreateTempSubdirectory("batch-").FullName;
        try
        {
            var queries = new List<string> { "query_id\tquery_path\tbox" };
            foreach (var s in TestPaths.VariantSources)
            {
                File.Copy(Path.Combine(TestPaths.Variants, s + ".crop50.jpg"), Path.Combine(dir, s + ".crop50.jpg"));
                File.Copy(Path.Combine(TestPaths.Variants, s + ".in-scene.jpg"), Path.Combine(dir, s + ".in-scene.jpg"));
                var box = (await File.ReadAllTextAsync(Path.Combine(TestPaths.Variants, s + ".in-scene.box"))).Trim();
                queries.Add($"{s}-crop\t{s}.crop50.jpg\t");
                queries.Add($"{s}-box\t{s}.in-scene.jpg\t{box}");
            }

            queries.Add("missing\tnot-there.jpg\t");
            var tsv = Path.Combine(dir, "q.tsv");
            await File.WriteAllLinesAsync(tsv, queries);

            var results = Path.Combine(dir, "results.tsv");
            var (code, _, stderr) = await TestPaths.RunAsync(TestPaths.Cli, "search-batch", "--queries", tsv, "--out", results, "--db", fixture.Db, "--top", "5");
            Assert.True(code == 0, stderr);
            Assert.Contains("missing", stderr, StringComparison.Ordinal);
            var rows = (await File.ReadAllLinesAsync(results)).ToList();
            Assert.Equal("query_id\trank\timage_id\tscore", rows[0]);
            Assert.Equal(TestPaths.VariantSources.Length * 2 * 5, rows.Count - 1);
            foreach (var s in TestPaths.VariantSources)
            {
                foreach (var kind in new[] { "crop", "box" })
                {
                    var first = rows.Single(r => r.StartsWith($"{s}-{kind}\t1\t", StringComparison.Ordinal)).Split('\t');
                    Assert.Equal(s + ".jpg", first[2]);
                    Assert.InRange(double.Parse(first[3], CultureInfo.InvariantCulture), -1.0, 1.0001);
                }
            }

            var seed = Path.Combine(dir, "seed.txt");
            (code, _, stderr) = await TestPaths.RunAsync(TestPaths.Cli, "search-batch", "--queries", tsv, "--out", seed, "--db", fixture.Db, "--top", "3", "--format", "seed");
            Assert.True(code == 0, stderr);
            var line = (await File.ReadAllLinesAsync(seed)).First(l => l.StartsWith("outdoors-school2-crop: ", StringComparison.Ordinal));
            Assert.StartsWith("outdoors-school2-crop: outdoors-school2.jpg, ", line, StringComparison.Ordinal);
            Assert.Equal(3, line.Split(": ")[1].Split(", ").Length);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task Bad_arguments_fail_with_a_clear_message()
    {
        var (code, _, stderr) = await TestPaths.RunAsync(TestPaths.Cli, "search", "/nonexistent.jpg", "--db", fixture.Db);
        Assert.Equal(2, code);
        Assert.Contains("does not exist", stderr, StringComparison.Ordinal);

        (code, _, stderr) = await TestPaths.RunAsync(TestPaths.Cli, "search", Path.Combine(TestPaths.Variants, "outdoors-school2.crop50.jpg"), "--box", "1,2", "--db", fixture.Db);
        Assert.Equal(2, code);
        Assert.Contains("four integers", stderr, StringComparison.Ordinal);

        (code, _, stderr) = await TestPaths.RunAsync(TestPaths.Cli, "search", Path.Combine(TestPaths.Variants, "broken-text.jpg"), "--db", fixture.Db);
        Assert.Equal(2, code);
        Assert.Contains("cannot use", stderr, StringComparison.Ordinal);

        (code, _, stderr) = await TestPaths.RunAsync(TestPaths.Cli, "search", Path.Combine(TestPaths.Variants, "outdoors-school2.crop50.jpg"), "--db", Path.Combine(fixture.Root, "nope"));
        Assert.Equal(2, code);
        Assert.Contains("not an index folder", stderr, StringComparison.Ordinal);
    }
}
