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

    /// <summary>Photos of the sizes cameras and phones make, where shrink-on-load and the box shrink come into play.</summary>
    private static readonly Lazy<(string Name, byte[] Bytes)[]> Big = new(() =>
    {
        var photo = TestData.Original(TestData.VariantStems[1]);
        var large = Decoder.Prepare(photo, 2400, 1800).Pixels; // 224x224 loads at 1/8; small enough to keep libvips' memory high-water mark (ErrorTests) low
        var portrait = Decoder.Prepare(photo, 1200, 1600).Pixels;
        var greyRgb = Decoder.Prepare(TestData.Variant(TestData.VariantStems[1] + ".grey.jpg"), 2000, 1500).Pixels.Pixels;
        var luma = Enumerable.Range(0, 2000 * 1500).Select(i => greyRgb[3 * i]).ToArray(); // one band: the decoder's grey path
        return
        [
            ("2400x1800 jpeg", VipsTestNative.Jpeg(large, 90)),
            ("1200x1600 jpeg", VipsTestNative.Jpeg(portrait, 90)),
            ("1200x900 jpeg", VipsTestNative.Jpeg(Decoder.Prepare(photo, 1200, 900).Pixels, 90)),
            ("2000x1500 grey jpeg", VipsTestNative.GreyJpeg(2000, 1500, luma, 90)),
            ("2400x1800 webp", VipsTestNative.WebP(large, 90)),
            ("1200x1600 tiff", VipsTestNative.Tiff(portrait)),
        ];
    });

    [Fact]
    public void Big_photos_give_both_views_exactly_and_the_query_variant_only_what_one_decode_gives()
    {
        foreach (var (name, bytes) in Big.Value)
        {
            var info = Decoder.ReadInfo(bytes);
            Assert.Equal(name.Contains("grey", StringComparison.Ordinal) ? 1 : 3, info.Bands);
            foreach (var region in new BoundingBox?[] { null, new BoundingBox(info.Width / 3, info.Height / 5, info.Width / 2, info.Height / 3), new BoundingBox(0, 0, 300, 200) })
            {
                foreach (var maxSide in new[] { 384, 1000 })
                {
                    var alone = Decoder.Prepare(bytes, 224, 224, region);
                    var fit = Decoder.DecodeFit(bytes, maxSide, null, region);
                    var (prepared, fitted) = Decoder.PrepareAndFit(bytes, 224, 224, maxSide, region);
                    Assert.True(alone.Pixels.Pixels.AsSpan().SequenceEqual(prepared.Pixels.Pixels), $"{name}, {region}, {maxSide}: prepared");
                    Assert.True(fit.Pixels.AsSpan().SequenceEqual(fitted.Pixels) && (fit.Width, fit.Height) == (fitted.Width, fitted.Height), $"{name}, {region}, {maxSide}: fitted");

                    // The query's variant: the prepared image always, the fitted one exactly when the same decode made it.
                    DecodeSession.PixelDecodesOnThisThread = 0;
                    var (queryPrepared, queryFitted) = Decoder.PrepareAndFitIfShared(bytes, 224, 224, maxSide, region);
                    Assert.Equal(1, DecodeSession.PixelDecodesOnThisThread);
                    Assert.True(alone.Pixels.Pixels.AsSpan().SequenceEqual(queryPrepared.Pixels.Pixels), $"{name}, {region}, {maxSide}: query prepared");
                    DecodeSession.PixelDecodesOnThisThread = 0;
                    Decoder.PrepareAndFit(bytes, 224, 224, maxSide, region);
                    Assert.Equal(queryFitted is null ? 2 : 1, DecodeSession.PixelDecodesOnThisThread);
                    if (queryFitted is not null)
                    {
                        Assert.True(fit.Pixels.AsSpan().SequenceEqual(queryFitted.Pixels), $"{name}, {region}, {maxSide}: query fitted");
                    }
                }
            }
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
