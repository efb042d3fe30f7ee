using ImageSearch.Core;
using ImageSearch.LocalFeatures;

namespace ImageSearch.Imaging.Tests;

/// <summary>SIFT extraction on real photos, the compact form, matching and the similarity fit.</summary>
public sealed class LocalFeatureTests
{
    private static readonly VipsImageDecoder Decoder = new();
    private static readonly LocalFeatureOptions Options = new();
    private static readonly SiftExtractor Extractor = new(Decoder, Microsoft.Extensions.Options.Options.Create(Options));
    private static readonly GeometricVerifier Verifier = new(Microsoft.Extensions.Options.Options.Create(Options));
    private const int MinInliers = 8; // the default of Rerank:MinInliers (ImageSearch.Pipeline.RerankOptions)

    [Theory]
    [MemberData(nameof(TestData.Stems), MemberType = typeof(TestData))]
    public void A_photo_pasted_into_another_scene_is_verified_and_an_unrelated_photo_is_not(string stem)
    {
        var original = Extractor.Extract(TestData.Original(stem));
        Assert.InRange(original.Count, 20, Options.MaxFeatures);
        Assert.InRange(Math.Max(original.Width, original.Height), 1, Options.MaxSide);

        var inScene = Extractor.Extract(TestData.Variant(stem + ".in-scene.jpg"));
        var crop = Extractor.Extract(TestData.Variant(stem + ".crop50.jpg"));
        Assert.True(Verifier.CountInliers(inScene, original) >= MinInliers, "the pasted photo is found in the scene");
        Assert.True(Verifier.CountInliers(crop, original) >= MinInliers, "a crop is verified against its source");

        var other = TestData.VariantStems.First(s => s != stem);
        Assert.True(Verifier.CountInliers(Extractor.Extract(TestData.Original(other)), original) < MinInliers, "an unrelated photo is not verified");
    }

    [Fact]
    public void Features_do_not_depend_on_rotation_by_a_right_angle()
    {
        var stem = TestData.VariantStems[0];
        var upright = Decoder.DecodeFit(TestData.Original(stem), Options.MaxSide);
        var original = Extractor.Extract(upright);
        var rotated = Extractor.Extract(Rotate90(upright));

        // Half of the features or more survive a rotation as geometric inliers.
        Assert.True(Verifier.CountInliers(rotated, original) >= Math.Min(original.Count, rotated.Count) / 4,
            $"{Verifier.CountInliers(rotated, original)} inliers of {original.Count} features");
    }

    [Fact]
    public void A_box_restricts_the_features_to_that_region()
    {
        var stem = TestData.VariantStems[1];
        var scene = TestData.Variant(stem + ".in-scene.jpg");
        var box = TestData.InSceneBox(stem);
        var inBox = Extractor.Extract(scene, box);
        Assert.Equal(Math.Max(box.Width, box.Height) > Options.MaxSide ? Options.MaxSide : Math.Max(box.Width, box.Height), Math.Max(inBox.Width, inBox.Height));
        Assert.True(Verifier.CountInliers(inBox, Extractor.Extract(TestData.Original(stem))) >= MinInliers);
    }

    [Fact]
    public void Broken_input_is_refused_as_an_invalid_image()
    {
        Assert.Throws<InvalidImageException>(() => Extractor.Extract(TestData.Variant("broken-truncated.jpg")));
    }

    [Fact]
    public void The_compact_form_round_trips_within_half_precision()
    {
        var features = Extractor.Extract(TestData.Original(TestData.VariantStems[2]));
        var bytes = features.ToBytes();
        Assert.Equal(12 + (features.Count * 136), bytes.Length);

        var back = LocalFeatureSet.FromBytes(bytes);
        Assert.Equal((features.Width, features.Height, features.Count), (back.Width, back.Height, back.Count));
        Assert.Equal(features.Descriptors, back.Descriptors);
        for (var i = 0; i < features.Frames.Length; i++)
        {
            Assert.Equal(features.Frames[i], back.Frames[i], Math.Max(1e-3f, Math.Abs(features.Frames[i]) / 1000));
        }

        Assert.Throws<FormatException>(() => LocalFeatureSet.FromBytes(bytes.AsSpan(0, bytes.Length - 1)));
        Assert.Throws<FormatException>(() => LocalFeatureSet.FromBytes([1, 2, 3]));
        Assert.Equal(0, LocalFeatureSet.FromBytes(LocalFeatureSet.Empty(10, 20).ToBytes()).Count);
    }

    [Fact]
    public void The_vectorised_descriptor_distance_equals_the_plain_sum()
    {
        var random = new Random(7);
        var a = new byte[128];
        var b = new byte[128];
        for (var trial = 0; trial < 200; trial++)
        {
            random.NextBytes(a);
            random.NextBytes(b);
            var expected = 0;
            for (var k = 0; k < 128; k++)
            {
                expected += (a[k] - b[k]) * (a[k] - b[k]);
            }

            Assert.Equal(expected, GeometricVerifier.SquaredDistance(a, b));
        }
    }

    [Fact]
    public void The_similarity_fit_counts_the_matches_that_agree_and_ignores_the_rest()
    {
        // 40 query points mapped by scale 0.5, a 60 degree turn and a shift; 25 matches point elsewhere.
        var random = new Random(3);
        const int Agreeing = 40, Outliers = 25;
        var query = new float[4 * (Agreeing + Outliers)];
        var candidate = new float[query.Length];
        var (sin, cos) = Math.SinCos(Math.PI / 3);
        var matches = new List<(int, int)>();
        for (var i = 0; i < Agreeing + Outliers; i++)
        {
            float x = random.Next(0, 380), y = random.Next(0, 280), sigma = 1 + (float)random.NextDouble() * 4, angle = (float)random.NextDouble();
            query[4 * i] = x;
            query[(4 * i) + 1] = y;
            query[(4 * i) + 2] = sigma;
            query[(4 * i) + 3] = angle;
            if (i < Agreeing)
            {
                candidate[4 * i] = (float)((0.5 * ((cos * x) - (sin * y))) + 200);
                candidate[(4 * i) + 1] = (float)((0.5 * ((sin * x) + (cos * y))) + 20);
                candidate[(4 * i) + 2] = sigma * 0.5f;
                candidate[(4 * i) + 3] = angle + (float)(Math.PI / 3);
            }
            else
            {
                candidate[4 * i] = random.Next(0, 380);
                candidate[(4 * i) + 1] = random.Next(0, 280);
                candidate[(4 * i) + 2] = sigma;
                candidate[(4 * i) + 3] = (float)random.NextDouble() * 6;
            }

            matches.Add((i, i));
        }

        var inliers = GeometricVerifier.BestSimilarity(query, candidate, matches, tolerance: 4);
        Assert.InRange(inliers, Agreeing, Agreeing + 2); // an outlier may land on the transform by chance
    }

    private static RgbImage Rotate90(RgbImage image)
    {
        var (w, h) = (image.Width, image.Height);
        var pixels = new byte[image.Pixels.Length];
        for (var y = 0; y < h; y++)
        {
            for (var x = 0; x < w; x++)
            {
                // (x, y) -> (h - 1 - y, x) in a h-wide image.
                var to = ((x * h) + (h - 1 - y)) * 3;
                var from = ((y * w) + x) * 3;
                pixels[to] = image.Pixels[from];
                pixels[to + 1] = image.Pixels[from + 1];
                pixels[to + 2] = image.Pixels[from + 2];
            }
        }

        return new RgbImage(h, w, pixels);
    }
}
