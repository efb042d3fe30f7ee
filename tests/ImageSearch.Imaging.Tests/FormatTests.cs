using ImageSearch.Core;

namespace ImageSearch.Imaging.Tests;

/// <summary>Which formats decode, detected by content, to the right size and pixels.</summary>
public sealed class FormatTests
{
    private static readonly VipsImageDecoder Decoder = new();

    [Fact]
    public void Every_real_photo_decodes_to_its_header_size()
    {
        var paths = TestData.PhotoPaths;
        Assert.Equal(61, paths.Count);
        foreach (var path in paths)
        {
            var bytes = File.ReadAllBytes(path);
            var info = Decoder.ReadInfo(bytes);
            // Most are 480x360 RGB; a few are a pixel shorter, and nature-moon is greyscale.
            Assert.Equal(("jpeg", 480), (info.Format, info.Width));
            Assert.InRange(info.Height, 359, 360);
            Assert.Equal(path.EndsWith("nature-moon.jpg", StringComparison.Ordinal) ? 1 : 3, info.Bands);
            var full = Decoder.DecodeFit(bytes, 480);
            Assert.Equal((info.Width, info.Height), (full.Width, full.Height));

            var prepared = Decoder.Prepare(bytes, 299, 299);
            Assert.Equal((299, 299, 299 * 299 * 3), (prepared.Pixels.Width, prepared.Pixels.Height, prepared.Pixels.Pixels.Length));
            Assert.Equal(info, prepared.Original);
            Assert.Null(prepared.Region);
        }
    }

    [Theory]
    [MemberData(nameof(TestData.Stems), MemberType = typeof(TestData))]
    public void Png_and_webp_of_a_photo_give_nearly_the_same_input_as_the_jpeg(string stem)
    {
        var jpeg = Decoder.Prepare(TestData.Original(stem), 224, 224).Pixels;

        var png = TestData.Variant(stem + ".png");
        Assert.Equal(new ImageInfo(480, 360, "png", 3), Decoder.ReadInfo(png));
        // Same pixels as the decoded JPEG (Pillow's libjpeg-turbo decode, saved losslessly).
        Assert.InRange(TestData.MeanAbsDiff(jpeg, Decoder.Prepare(png, 224, 224).Pixels), 0, 0.5);

        var webp = TestData.Variant(stem + ".webp");
        Assert.Equal(new ImageInfo(480, 360, "webp", 3), Decoder.ReadInfo(webp));
        // WebP at quality 90 (the flower bed, all fine detail, loses most: 4.0 even at full size).
        Assert.InRange(TestData.MeanAbsDiff(jpeg, Decoder.Prepare(webp, 224, 224).Pixels), 0, 4);
    }

    public static TheoryData<string, double> EncodedFormats => new()
    {
        { "tiff", 0.5 },
        { "gif", 12 }, // 256-colour palette with dithering
        { "heif", 4 }, // HEIC (x265 encode, libde265 decode)
        { "avif", 4 }, // AV1 (libaom encode, dav1d/libaom decode)
    };

    [Theory]
    [MemberData(nameof(EncodedFormats))]
    public void Tiff_gif_heic_and_avif_decode(string format, double maxMeanDiff)
    {
        // The photo at half size keeps the HEIF/AVIF encoders quick.
        var source = Decoder.DecodeFit(TestData.Original(TestData.VariantStems[0]), 240);
        var bytes = format switch
        {
            "tiff" => VipsTestNative.Tiff(source),
            "gif" => VipsTestNative.Gif(source),
            "heif" => VipsTestNative.Heif(source, VipsTestNative.HeifHevc),
            _ => VipsTestNative.Heif(source, VipsTestNative.HeifAv1),
        };

        Assert.Equal(new ImageInfo(240, 180, format, 3), Decoder.ReadInfo(bytes));
        Assert.InRange(TestData.MeanAbsDiff(source, Decoder.DecodeFit(bytes, 240)), 0, maxMeanDiff);
    }

    [Fact]
    public void Animated_gif_gives_its_first_frame()
    {
        var first = Decoder.DecodeFit(TestData.Original(TestData.VariantStems[0]), 120);
        var second = Decoder.DecodeFit(TestData.Original(TestData.VariantStems[1]), 120);
        var gif = VipsTestNative.AnimatedGif(first, second);

        // Animations are read as RGBA (frames may be transparent); the output is RGB all the same.
        Assert.Equal(new ImageInfo(120, 90, "gif", 4), Decoder.ReadInfo(gif));
        var decoded = Decoder.DecodeFit(gif, 120);
        Assert.InRange(TestData.MeanAbsDiff(first, decoded), 0, 12);
        Assert.True(TestData.MeanAbsDiff(second, decoded) > 20);
    }

    public static TheoryData<string, string> RefusedInputs => new()
    {
        { "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"><rect width=\"10\" height=\"10\"/></svg>", "SVG" },
        { "%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n", "PDF" },
        // A 1x1 24-bit BMP: libvips reads BMP only through its ImageMagick module, which the decoder
        // does not load (see VipsRuntime.UsePrivateModuleFolder), so no loader recognises it at all.
        { "BM:\0\0\0\0\0\0\06\0\0\0(\0\0\0\u0001\0\0\0\u0001\0\0\0\u0001\0\u0018\0\0\0\0\0\u0004\0\0\0\u0013\u000b\0\0\u0013\u000b\0\0\0\0\0\0\0\0\0\0\0\0\0\0", "Not a recognised image format" },
    };

    [Theory]
    [MemberData(nameof(RefusedInputs))]
    public void Formats_outside_the_allow_list_are_refused_as_unsupported(string content, string named)
    {
        var bytes = content.Select(c => (byte)c).ToArray();
        var e = Assert.Throws<InvalidImageException>(() => Decoder.Prepare(bytes, 64, 64));
        Assert.Equal(ImageErrorKind.UnsupportedFormat, e.Kind);
        Assert.Contains(named, e.Message, StringComparison.Ordinal);
        Assert.Equal(ImageErrorKind.UnsupportedFormat, Assert.Throws<InvalidImageException>(() => Decoder.ReadInfo(bytes)).Kind);
    }

    [Fact]
    public void Supported_formats_and_version_are_reported()
    {
        Assert.Equal(["jpeg", "png", "webp", "tiff", "gif", "heif", "avif"], VipsImageDecoder.SupportedFormats);
        Assert.StartsWith("8.", VipsImageDecoder.LibVipsVersion, StringComparison.Ordinal);
    }
}
