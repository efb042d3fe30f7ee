using ImageSearch.Core;
using ImageSearch.Imaging.Vips;

namespace ImageSearch.Imaging.Tests;

/// <summary>
/// <see cref="VipsImageDecoder.PrepareAndFit"/>: the model's input and the view local features are
/// extracted from, from one decode where one serves both; each exactly what its own call gives.
/// </summary>
public sealed class PrepareAndFitTests
{
    private static readonly VipsImageDecoder Decoder = new();

    /// <summary>Every real photo, and every variant of the test set (crops, grey, EXIF-rotated, WebP, PNG, a scene).</summary>
    public static TheoryData<string> Files => [.. TestData.PhotoPaths.Concat(
        Directory.GetFiles(TestData.VariantsDirectory).Where(p => !Path.GetFileName(p).StartsWith("broken-", StringComparison.Ordinal) &&
            !Path.GetFileName(p).StartsWith("bomb-", StringComparison.Ordinal) && !p.EndsWith(".box", StringComparison.Ordinal))).Order(StringComparer.Ordinal)];

    [Theory]
    [MemberData(nameof(Files))]
    public void Both_views_are_exactly_what_their_own_calls_give(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var info = Decoder.ReadInfo(bytes);
        var box = new BoundingBox(info.Width / 5, info.Height / 4, info.Width / 2, info.Height / 2);
        foreach (var (region, maxSide) in new (BoundingBox?, int)[] { (null, 384), (box, 384), (null, 96), (box, 1000) })
        {
            var (prepared, fitted) = Decoder.PrepareAndFit(bytes, 224, 224, maxSide, region);
            var alone = Decoder.Prepare(bytes, 224, 224, region);
            Assert.Equal((alone.Original, alone.Region), (prepared.Original, prepared.Region));
            Assert.Equal(alone.Pixels.Pixels, prepared.Pixels.Pixels);
            var fit = Decoder.DecodeFit(bytes, maxSide, null, region);
            Assert.Equal((fit.Width, fit.Height), (fitted.Width, fitted.Height));
            Assert.Equal(fit.Pixels, fitted.Pixels);
        }
    }

    [Fact]
    public void One_decode_serves_both_where_they_reduce_alike_and_two_where_they_do_not()
    {
        var photo = TestData.Original(TestData.VariantStems[0]); // 480x360: decoded at full size for 224x224 and for 384
        DecodeSession.PixelDecodesOnThisThread = 0;
        Decoder.PrepareAndFit(photo, 224, 224, 384);
        Assert.Equal(1, DecodeSession.PixelDecodesOnThisThread);

        // 1920x1440: 224x224 loads at 1/4 (480x360), the fit to 1000 at 1/1: two decodes.
        var big = VipsTestNative.Jpeg(Decoder.Prepare(photo, 1920, 1440).Pixels, 92);
        DecodeSession.PixelDecodesOnThisThread = 0;
        Decoder.PrepareAndFit(big, 224, 224, 1000);
        Assert.Equal(2, DecodeSession.PixelDecodesOnThisThread);

        // Separately, as before: one decode each.
        DecodeSession.PixelDecodesOnThisThread = 0;
        Decoder.Prepare(photo, 224, 224);
        Decoder.DecodeFit(photo, 384);
        Assert.Equal(2, DecodeSession.PixelDecodesOnThisThread);
    }

    [Fact]
    public void A_box_in_the_intact_part_of_a_truncated_file_is_still_corrupt()
    {
        var truncated = TestData.Variant("broken-truncated.jpg");
        var e = Assert.Throws<InvalidImageException>(() => Decoder.PrepareAndFit(truncated, 32, 32, 64, new BoundingBox(0, 0, 40, 30)));
        Assert.Equal(ImageErrorKind.Corrupt, e.Kind);
    }
}
