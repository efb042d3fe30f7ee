using ImageSearch.Core;

namespace ImageSearch.Imaging.Tests;

/// <summary>
/// Big JPEG and WebP files are decoded at reduced size (DCT scaling, libwebp scaling) when the
/// output is small; the result must match a full decode, with and without a box.
/// </summary>
public sealed class ReducedDecodeTests
{
    private static readonly VipsImageDecoder Decoder = new();

    /// <summary>The photo enlarged 4x to 1920x1440, as JPEG and WebP, and the 480x360 original.</summary>
    private static readonly Lazy<(byte[] Jpeg, byte[] WebP, byte[] Small)> Big = new(() =>
    {
        var small = TestData.Original(TestData.VariantStems[2]);
        var big = Decoder.Prepare(small, 1920, 1440).Pixels;
        return (VipsTestNative.Jpeg(big, 92), VipsTestNative.WebP(big, 92), small);
    });

    public static TheoryData<string> Formats => ["jpeg", "webp"];

    [Theory]
    [MemberData(nameof(Formats))]
    public void Reduced_decode_matches_the_small_original(string format)
    {
        var (jpeg, webp, small) = Big.Value;
        var big = format == "jpeg" ? jpeg : webp;
        Assert.Equal(new ImageInfo(1920, 1440, format, 3), Decoder.ReadInfo(big));

        // 299: JPEG loads at 1/4 (480x360); 100x75: at 1/8; WebP scales to just above the target.
        foreach (var (w, h) in new[] { (299, 299), (100, 75), (640, 480) })
        {
            Assert.InRange(TestData.MeanAbsDiff(Decoder.Prepare(small, w, h).Pixels, Decoder.Prepare(big, w, h).Pixels), 0, 2.5);
        }

        // A box in the big image is the same scene as the box a quarter of its size in the small one.
        var bigBox = new BoundingBox(404, 288, 1000, 720);
        var smallBox = new BoundingBox(101, 72, 250, 180);
        var fromBig = Decoder.Prepare(big, 200, 144, bigBox);
        Assert.Equal(bigBox, fromBig.Region);
        Assert.InRange(TestData.MeanAbsDiff(Decoder.Prepare(small, 200, 144, smallBox).Pixels, fromBig.Pixels), 0, 3);

        Assert.InRange(TestData.MeanAbsDiff(Decoder.DecodeFit(small, 400), Decoder.DecodeFit(big, 400)), 0, 2.5);
    }

    [Theory]
    [InlineData(1920, 1440, 224, 224, 1, 4)] // 1440 / 8 = 180 < 224
    [InlineData(4000, 3000, 299, 299, 1, 8)]
    [InlineData(4000, 3000, 480, 360, 1, 8)] // exactly the target is enough
    [InlineData(4000, 3000, 501, 360, 1, 4)]
    [InlineData(4000, 3000, 299, 299, 2, 4)] // boxes keep twice the target
    [InlineData(480, 360, 224, 224, 1, 1)]
    [InlineData(100, 100, 224, 224, 1, 1)] // enlarging
    [InlineData(3000, 200, 224, 224, 1, 1)] // the short side decides
    public void Jpeg_shrink_never_goes_below_the_target(int regionWidth, int regionHeight, int width, int height, int margin, int expected)
    {
        Assert.Equal(expected, Vips.DecodeSession.JpegShrinkFactor(regionWidth, regionHeight, width, height, margin));
    }
}
