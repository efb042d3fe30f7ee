using System.Globalization;
using System.Text.Json;
using Xunit.Abstractions;

namespace ImageSearch.Embedding.Tests;

/// <summary>
/// The real exported models: raw output against the reference the exporter computed with the
/// original TF.js models (tests/fixtures/model-reference/NAME.json) on the same synthetic pattern
/// images, and batch/single consistency. Needs models/NAME (written by `./imagesearch setup`);
/// fails naming the missing file otherwise rather than skipping.
/// </summary>
public class ModelFidelityTests(ITestOutputHelper output)
{
    private static readonly string ModelsDirectory = Path.Combine(TestSupport.RepoRoot, "models");

    private static void RequireFiles(params string[] paths)
    {
        foreach (var path in paths)
        {
            Assert.True(File.Exists(path), $"Missing {path}: run `./imagesearch setup` to export the models and their reference outputs.");
        }
    }

    private static OnnxEmbedder Open(string model)
    {
        RequireFiles(Path.Combine(ModelsDirectory, model, "model.onnx"), Path.Combine(ModelsDirectory, model, "model.json"));
        return new OnnxEmbedder(new EmbeddingOptions { ModelsDirectory = ModelsDirectory, Model = model, IntraOpThreads = 2 });
    }

    [Theory]
    [InlineData("inception-v3-mixed7")]
    [InlineData("mobilenet-v2-1.4")]
    public void RawOutput_MatchesTheReference(string model)
    {
        var fixturePath = Path.Combine(TestSupport.RepoRoot, "tests", "fixtures", "model-reference", model + ".json");
        RequireFiles(fixturePath);

        using var fixture = JsonDocument.Parse(File.ReadAllBytes(fixturePath));
        var seeds = fixture.RootElement.GetProperty("inputs").EnumerateArray().Select(i => i.GetProperty("seed").GetInt32()).ToArray();
        var expected = fixture.RootElement.GetProperty("outputs").EnumerateArray()
            .Select(o => o.EnumerateArray().Select(v => v.GetSingle()).ToArray()).ToArray();
        Assert.Equal(seeds.Length, expected.Length);

        using var embedder = Open(model);
        var info = embedder.RawModel;
        var images = seeds.Select(seed => TestSupport.PatternImage(info.InputWidth, info.InputHeight, seed)).ToArray();

        var actual = embedder.EmbedRaw(images);

        for (var i = 0; i < seeds.Length; i++)
        {
            Assert.Equal(expected[i].Length, actual[i].Length);
            var cosine = TestSupport.Cosine(actual[i], expected[i]);
            var scale = expected[i].Max(Math.Abs);
            var maxError = expected[i].Zip(actual[i], (e, a) => Math.Abs(e - a)).Max();
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{model} seed {seeds[i]}: cosine {cosine:F8}, max |error| {maxError:G3} (largest reference value {scale:G4})"));
            Assert.True(cosine > 0.9999, string.Create(CultureInfo.InvariantCulture, $"{model} seed {seeds[i]}: cosine {cosine} <= 0.9999"));
            // Float32 rounding differs between TF.js and ONNX Runtime kernels; the fixture keeps 6 significant digits.
            Assert.True(maxError <= 1e-4 * scale, string.Create(CultureInfo.InvariantCulture,
                $"{model} seed {seeds[i]}: max |error| {maxError} exceeds 1e-4 x {scale}"));
        }
    }

    [Theory]
    [InlineData("inception-v3-mixed7")]
    [InlineData("mobilenet-v2-1.4")]
    public void Batch_GivesTheSameUnitVectorsAsSingles(string model)
    {
        using var embedder = Open(model);
        var info = embedder.RawModel;
        var random = new Random(11);
        var images = new[]
        {
            TestSupport.PatternImage(info.InputWidth, info.InputHeight, seed: 2),
            TestSupport.RandomImage(info.InputWidth, info.InputHeight, random),
            TestSupport.PatternImage(info.InputWidth, info.InputHeight, seed: 3),
        };

        var batch = embedder.Embed(images);

        for (var i = 0; i < images.Length; i++)
        {
            var single = embedder.Embed([images[i]])[0];
            Assert.Equal(1.0, TestSupport.Norm(batch[i]), 1e-5);
            var maxDifference = single.Zip(batch[i], (a, b) => Math.Abs(a - b)).Max();
            Assert.True(maxDifference <= 1e-5, string.Create(CultureInfo.InvariantCulture, $"{model} image {i}: batch and single differ by {maxDifference}"));
        }
    }

    /// <summary>
    /// The pooling variants of MobileNetV2-1.4 pool the same 7x7x1792 map (values at least 0) that the
    /// default model average-pools, so per channel: mean, then GeM (p = 3), then max, in increasing order (the power-mean
    /// inequality), and R-MAC, a sum of L2-normalised regional maxima whose first region is the
    /// whole map, is at least the normalised global max and at most 14 (1 + 4 + 9 unit vectors) long.
    /// </summary>
    [Fact]
    public void PoolingVariants_ObeyThePoolingInequalities()
    {
        using var average = Open("mobilenet-v2-1.4");
        using var max = Open("mobilenet-v2-1.4-max");
        using var gem = Open("mobilenet-v2-1.4-gem3");
        using var rmac = Open("mobilenet-v2-1.4-rmac");
        var info = average.RawModel;
        var images = new[] { TestSupport.PatternImage(info.InputWidth, info.InputHeight, 5), TestSupport.RandomImage(info.InputWidth, info.InputHeight, new Random(2)) };
        var (a, m, g, r) = (average.EmbedRaw(images), max.EmbedRaw(images), gem.EmbedRaw(images), rmac.EmbedRaw(images));
        for (var i = 0; i < images.Length; i++)
        {
            Assert.Equal(1792, r[i].Length);
            var maxNorm = TestSupport.Norm(m[i]);
            for (var c = 0; c < a[i].Length; c++)
            {
                var tolerance = 1e-4f * (1 + m[i][c]);
                Assert.InRange(a[i][c], 0, g[i][c] + tolerance);
                Assert.InRange(g[i][c], a[i][c] - tolerance, m[i][c] + tolerance);
                Assert.True(r[i][c] >= (m[i][c] / maxNorm) - 1e-4, $"image {i} channel {c}: R-MAC {r[i][c]} below the normalised global max");
            }

            Assert.InRange(TestSupport.Norm(r[i]), 1 - 1e-4, 14 + 1e-4);
            Assert.True(a[i].Zip(m[i]).Any(p => p.First < p.Second * 0.99f), "max pooling differs from average pooling");
        }
    }
}
