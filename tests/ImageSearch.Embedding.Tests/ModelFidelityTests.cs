using System.Globalization;
using System.Text.Json;
using ImageSearch.Core;
using ImageSearch.Imaging;
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
    [InlineData("mobilenet-v2-1.4-rmac-ms")]
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

    /// <summary>
    /// The 320x320 R-MAC pools a 10x10 map over 1 + 4 + 9 regions: a sum of 14 unit vectors with
    /// no negative component, so its length is at least sqrt(14) (the cross terms are never
    /// negative) and at most 14. The multi-scale model sums two such R-MAC vectors after
    /// normalising each, so its length lies between sqrt(2) and 2.
    /// </summary>
    [Fact]
    public void LargerScaleRmac_AndMultiScale_HaveTheLengthsTheirSumsAllow()
    {
        using var rmac320 = Open("mobilenet-v2-1.4-rmac320");
        using var multiScale = Open("mobilenet-v2-1.4-rmac-ms");
        Assert.Equal((320, 320, 1792), (rmac320.RawModel.InputWidth, rmac320.RawModel.InputHeight, rmac320.RawModel.Dimensions));
        Assert.Equal((320, 320, 1792), (multiScale.RawModel.InputWidth, multiScale.RawModel.InputHeight, multiScale.RawModel.Dimensions));
        var images = new[] { TestSupport.PatternImage(320, 320, 4), TestSupport.RandomImage(320, 320, new Random(3)) };
        var (r, ms) = (rmac320.EmbedRaw(images), multiScale.EmbedRaw(images));
        for (var i = 0; i < images.Length; i++)
        {
            Assert.All(r[i], v => Assert.True(v >= 0));
            Assert.InRange(TestSupport.Norm(r[i]), Math.Sqrt(14) - 1e-4, 14 + 1e-4);
            Assert.All(ms[i], v => Assert.True(v >= 0));
            Assert.InRange(TestSupport.Norm(ms[i]), Math.Sqrt(2) - 1e-4, 2 + 1e-4);
        }
    }

    /// <summary>
    /// The multi-scale graph takes one 320x320 image and computes, inside the graph, what the
    /// two single-scale models give: R-MAC of the image resized to 224x224 by the decoder's own
    /// filter (the default model) plus R-MAC at 320x320, each L2-normalised, summed. The decoder
    /// rounds its resized pixels to bytes and the graph does not, hence the tolerance (on the
    /// smooth ramps, where that rounding is a visible banding, up to 1.7% of the largest value).
    /// A resize misplaced by a fraction of a pixel would not pass on the noise image.
    /// </summary>
    [Fact]
    public void MultiScale_IsTheSumOfTheNormalisedRmacVectorsAt224And320()
    {
        using var rmac224 = Open("mobilenet-v2-1.4-rmac");
        using var rmac320 = Open("mobilenet-v2-1.4-rmac320");
        using var multiScale = Open("mobilenet-v2-1.4-rmac-ms");
        var images = new[] { TestSupport.PatternImage(320, 320, 6), TestSupport.RandomImage(320, 320, new Random(4)), GradientImage(320) };
        var small = images.Select(im => new RgbImage(224, 224, Resampler.Resize(im.Pixels, 320, 320, 224, 224))).ToArray();
        var (a, b, ms) = (rmac224.EmbedRaw(small), rmac320.EmbedRaw(images), multiScale.EmbedRaw(images));
        for (var i = 0; i < images.Length; i++)
        {
            var (na, nb) = (TestSupport.Norm(a[i]), TestSupport.Norm(b[i]));
            var expected = a[i].Zip(b[i], (x, y) => (float)((x / na) + (y / nb))).ToArray();
            var cosine = TestSupport.Cosine(ms[i], expected);
            var maxError = expected.Zip(ms[i], (e, v) => Math.Abs(e - v)).Max();
            var scale = expected.Max();
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"image {i}: cosine {cosine:F8}, max |error| {maxError:G3} (largest value {scale:G4})"));
            Assert.True(cosine > 0.9999, string.Create(CultureInfo.InvariantCulture, $"image {i}: cosine {cosine} <= 0.9999"));
            Assert.True(maxError < 0.03 * scale, string.Create(CultureInfo.InvariantCulture, $"image {i}: max |error| {maxError} >= 3% of {scale}"));
        }

        // The two scales see different things: the sum is neither scale alone.
        Assert.True(TestSupport.Cosine(a[0], b[0]) < 0.999);
    }

    /// <summary>
    /// Calibrated like every model (centring and whitening learned on raw vectors, here of
    /// synthetic images, to 16 dimensions), the multi-scale model embeds unit vectors of the
    /// calibration's dimensions under a key that names the calibration.
    /// </summary>
    [Fact]
    public void MultiScale_EmbedsUnitVectorsOfTheCalibratedDimension()
    {
        using var temp = new TestSupport.TempDirectory();
        var random = new Random(7);
        var samples = Enumerable.Range(0, 24)
            .Select(i => i % 2 == 0 ? TestSupport.PatternImage(320, 320, i) : TestSupport.RandomImage(320, 320, random)).ToArray();
        var calibrationPath = Path.Combine(temp.Path, "calibration.bin");
        using (var raw = Open("mobilenet-v2-1.4-rmac-ms"))
        {
            Calibration.Fit(raw.RawModel.Key, raw.EmbedRaw(samples), new CalibrationFitOptions { OutputDimensions = 16 }).Save(calibrationPath);
        }

        using var embedder = new OnnxEmbedder(new EmbeddingOptions
        {
            ModelsDirectory = ModelsDirectory, Model = "mobilenet-v2-1.4-rmac-ms", IntraOpThreads = 2, CalibrationFile = calibrationPath,
        });

        Assert.Equal("mobilenet-v2-1.4-rmac-ms", embedder.Model.Name);
        Assert.Contains("+cal.", embedder.Model.Version, StringComparison.Ordinal);
        Assert.Equal((16, 320, 320), (embedder.Model.Dimensions, embedder.Model.InputWidth, embedder.Model.InputHeight));
        var vectors = embedder.Embed([TestSupport.PatternImage(320, 320, 40), TestSupport.RandomImage(320, 320, random)]);
        Assert.All(vectors, v =>
        {
            Assert.Equal(16, v.Length);
            Assert.Equal(1.0, TestSupport.Norm(v), 1e-5);
        });
    }

    /// <summary>A smooth image (diagonal colour ramps), unlike the pattern's sawtooth and the noise.</summary>
    private static RgbImage GradientImage(int size)
    {
        var pixels = new byte[size * size * 3];
        for (var y = 0; y < size; y++)
        {
            for (var x = 0; x < size; x++)
            {
                var at = ((y * size) + x) * 3;
                pixels[at] = (byte)(255 * x / (size - 1));
                pixels[at + 1] = (byte)(255 * y / (size - 1));
                pixels[at + 2] = (byte)(255 * (x + y) / (2 * (size - 1)));
            }
        }

        return new RgbImage(size, size, pixels);
    }
}
