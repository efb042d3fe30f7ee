using ImageSearch.Core;
using ImageSearch.LocalFeatures;

namespace ImageSearch.Imaging.Tests;

/// <summary>
/// The shim's fast path (its own SIMD scale space, descriptors only for the kept features) against
/// VLFeat's own pipeline on real photos. They must agree bit for bit: same count, same frames
/// (positions, scales, angles as floats) and same descriptor bytes, in the same order. Exact
/// equality is the honest tolerance here: the fast smoothing rounds every pixel as VLFeat's scalar
/// loop does (sift_shim.c says why), so any difference at all is a bug, not noise.
/// </summary>
public sealed class SiftFastPathTests
{
    private static readonly VipsImageDecoder Decoder = new();

    /// <summary>The kernels under test. One this CPU lacks falls back to the best it has (<see cref="SiftExtractor.SimdLevel"/>).</summary>
    public static TheoryData<int> Kernels => [SiftNative.ScalarKernel, SiftNative.Avx2Kernel, SiftNative.Avx512Kernel];

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Every_kernel_gives_VLFeats_own_features_on_every_test_photo(int kernel)
    {
        var extractor = Extractor(new LocalFeatureOptions());
        var compared = 0;
        foreach (var path in TestData.PhotoPaths)
        {
            var image = Decoder.DecodeFit(File.ReadAllBytes(path), 384);
            compared += AssertSame(extractor, image, kernel, Path.GetFileName(path));
        }

        // The photos must yield features for the comparison to mean anything.
        Assert.True(compared > 100 * TestData.PhotoPaths.Count, $"only {compared} features on {TestData.PhotoPaths.Count} photos");
    }

    [Theory]
    [InlineData(-1, 300)] // the image doubled first (VLFeat's upsampling)
    [InlineData(1, 300)] // the image halved first
    [InlineData(0, 16)] // far fewer kept than found: most descriptors are skipped
    [InlineData(0, 4096)] // every orientation kept: nothing is skipped
    public void Other_octaves_and_feature_budgets_give_VLFeats_own_features(int firstOctave, int maxFeatures)
    {
        var extractor = Extractor(new LocalFeatureOptions { FirstOctave = firstOctave, MaxFeatures = maxFeatures, PeakThreshold = 0.003 });
        foreach (var stem in TestData.VariantStems.Take(3))
        {
            AssertSame(extractor, Decoder.DecodeFit(TestData.Variant(stem + ".in-scene.jpg"), 384), SiftNative.DefaultKernel, stem);
        }
    }

    [Theory]
    [InlineData(16, 16)]
    [InlineData(17, 45)]
    [InlineData(45, 17)]
    [InlineData(33, 31)]
    [InlineData(97, 65)]
    public void Small_and_odd_sizes_give_VLFeats_own_features(int width, int height)
    {
        // Widths around the vector lengths (8, 16, 32 lanes) exercise the kernels' tails and masks.
        var extractor = Extractor(new LocalFeatureOptions { PeakThreshold = 0.001 });
        var photo = Decoder.DecodeFit(TestData.Original(TestData.VariantStems[0]), 384);
        foreach (var kernel in new[] { SiftNative.ScalarKernel, SiftNative.Avx2Kernel, SiftNative.Avx512Kernel })
        {
            AssertSame(extractor, Crop(photo, width, height), kernel, $"{width}x{height}");
        }
    }

    [Fact]
    public void A_large_image_beyond_the_kept_scratch_gives_VLFeats_own_features()
    {
        // A 1440x960 mosaic of nine photos: its scale space (~150 MB) is above the shim's per-thread
        // scratch limit, so the block is allocated for the call and freed after it.
        var photos = TestData.PhotoPaths.Take(9).Select(p => Decoder.DecodeFit(File.ReadAllBytes(p), 480)).ToArray();
        const int TileWidth = 480, TileHeight = 320;
        var pixels = new byte[3 * TileWidth * 3 * TileHeight * 3];
        for (var t = 0; t < 9; t++)
        {
            var tile = photos[t];
            Assert.True(tile.Width >= TileWidth && tile.Height >= TileHeight, $"photo {t} is {tile.Width}x{tile.Height}");
            for (var y = 0; y < TileHeight; y++)
            {
                var to = ((((t / 3 * TileHeight) + y) * 3 * TileWidth) + (t % 3 * TileWidth)) * 3;
                Array.Copy(tile.Pixels, y * tile.Width * 3, pixels, to, TileWidth * 3);
            }
        }

        var extractor = Extractor(new LocalFeatureOptions { MaxSide = 1440 });
        Assert.True(AssertSame(extractor, new RgbImage(3 * TileWidth, 3 * TileHeight, pixels), SiftNative.DefaultKernel, "mosaic") > 100);
    }

    [Fact]
    public void A_flat_image_has_no_features_on_either_path()
    {
        var extractor = Extractor(new LocalFeatureOptions());
        var grey = new RgbImage(64, 48, Enumerable.Repeat((byte)128, 64 * 48 * 3).ToArray());
        Assert.Equal(0, extractor.Extract(grey, SiftNative.DefaultKernel).Count);
        Assert.Equal(0, extractor.Extract(grey, SiftNative.ReferenceKernel).Count);
    }

    [Fact]
    public void Images_below_sixteen_pixels_have_no_features()
    {
        var extractor = Extractor(new LocalFeatureOptions());
        var tiny = new RgbImage(15, 40, new byte[15 * 40 * 3]);
        var set = extractor.Extract(tiny);
        Assert.Equal((0, 15, 40), (set.Count, set.Width, set.Height));
    }

    [Fact]
    public void An_unknown_kernel_is_refused()
    {
        var extractor = Extractor(new LocalFeatureOptions());
        var photo = Decoder.DecodeFit(TestData.Original(TestData.VariantStems[0]), 384);
        Assert.Throws<ArgumentException>(() => extractor.Extract(photo, SiftNative.Avx512Kernel + 1));
        Assert.Throws<ArgumentException>(() => extractor.Extract(photo, SiftNative.ReferenceKernel - 1));
    }

    [Fact]
    public void The_reference_option_runs_VLFeats_own_pipeline_with_the_same_result()
    {
        var photo = Decoder.DecodeFit(TestData.Original(TestData.VariantStems[1]), 384);
        var fast = Extractor(new LocalFeatureOptions()).Extract(photo);
        var reference = Extractor(new LocalFeatureOptions { ReferenceSift = true }).Extract(photo);
        Assert.True(fast.Count > 20);
        Assert.Equal(reference.Frames, fast.Frames);
        Assert.Equal(reference.Descriptors, fast.Descriptors);
    }

    [Fact]
    public void The_default_kernel_is_a_known_level()
    {
        Assert.InRange(SiftExtractor.SimdLevel, SiftNative.ScalarKernel, SiftNative.Avx512Kernel);
    }

    private static SiftExtractor Extractor(LocalFeatureOptions options) => new(Decoder, Microsoft.Extensions.Options.Options.Create(options));

    /// <summary>Asserts the kernel's features equal the reference's; returns how many there were.</summary>
    private static int AssertSame(SiftExtractor extractor, RgbImage image, int kernel, string name)
    {
        var reference = extractor.Extract(image, SiftNative.ReferenceKernel);
        var fast = extractor.Extract(image, kernel);
        Assert.True(reference.Count == fast.Count, $"{name}: {fast.Count} features, VLFeat {reference.Count}");
        for (var i = 0; i < reference.Frames.Length; i++)
        {
            // Bitwise: a sign of zero or a last-bit rounding would also fail here.
            Assert.True(BitConverter.SingleToInt32Bits(reference.Frames[i]) == BitConverter.SingleToInt32Bits(fast.Frames[i]),
                $"{name} kernel {kernel}: feature {i / 4} frame value {i % 4} is {fast.Frames[i]:R}, VLFeat {reference.Frames[i]:R}");
        }

        for (var i = 0; i < reference.Descriptors.Length; i++)
        {
            if (reference.Descriptors[i] != fast.Descriptors[i])
            {
                Assert.Fail($"{name} kernel {kernel}: feature {i / 128} descriptor byte {i % 128} is {fast.Descriptors[i]}, VLFeat {reference.Descriptors[i]}");
            }
        }

        return reference.Count;
    }

    private static RgbImage Crop(RgbImage image, int width, int height)
    {
        var pixels = new byte[width * height * 3];
        for (var y = 0; y < height; y++)
        {
            Array.Copy(image.Pixels, y * image.Width * 3, pixels, y * width * 3, width * 3);
        }

        return new RgbImage(width, height, pixels);
    }
}
