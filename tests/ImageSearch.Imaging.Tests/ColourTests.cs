using ImageSearch.Core;

namespace ImageSearch.Imaging.Tests;

/// <summary>Every input becomes 8-bit sRGB with 3 bands.</summary>
public sealed class ColourTests
{
    private static readonly VipsImageDecoder Decoder = new();

    [Theory]
    [MemberData(nameof(TestData.Stems), MemberType = typeof(TestData))]
    public void Grey_jpeg_gives_three_equal_channels(string stem)
    {
        var grey = TestData.Variant(stem + ".grey.jpg");
        Assert.Equal(new ImageInfo(480, 360, "jpeg", 1), Decoder.ReadInfo(grey));

        var pixels = Decoder.Prepare(grey, 224, 224).Pixels.Pixels;
        for (var i = 0; i < pixels.Length; i += 3)
        {
            Assert.True(pixels[i] == pixels[i + 1] && pixels[i] == pixels[i + 2], $"pixel {i / 3} is not grey");
        }

        // And it is the photo: close to the luminance of the colour version.
        var colour = Decoder.Prepare(TestData.Original(stem), 224, 224).Pixels.Pixels;
        double sum = 0;
        for (var i = 0; i < pixels.Length; i += 3)
        {
            sum += Math.Abs(pixels[i] - ((0.299 * colour[i]) + (0.587 * colour[i + 1]) + (0.114 * colour[i + 2])));
        }

        Assert.InRange(sum / (pixels.Length / 3), 0, 4);
    }

    [Fact]
    public void Alpha_is_flattened_onto_white()
    {
        // Left half transparent black, right half opaque red, except 50% red at x = 4.
        var samples = new ushort[8 * 2 * 4];
        for (var y = 0; y < 2; y++)
        {
            for (var x = 4; x < 8; x++)
            {
                samples[((y * 8) + x) * 4] = 255;
                samples[(((y * 8) + x) * 4) + 3] = (ushort)(x == 4 ? 128 : 255);
            }
        }

        var rgb = Decoder.DecodeFit(Png.Encode(8, 2, Png.Rgba, 8, samples), 8).Pixels;
        Assert.Equal([255, 255, 255], rgb[..3]);
        Assert.Equal(255, rgb[12]);
        Assert.InRange(rgb[13], 126, 128);
        Assert.InRange(rgb[14], 126, 128);
        Assert.Equal([255, 0, 0], rgb[21..24]);
    }

    [Fact]
    public void Sixteen_bit_png_with_alpha_becomes_eight_bit_on_white()
    {
        // 16-bit RGBA: an opaque blue, then the same colour fully transparent.
        var samples = new ushort[] { 0x1200, 0x8000, 0xFFFF, 0xFFFF, 0x1200, 0x8000, 0xFFFF, 0x0000 };
        var rgb = Decoder.DecodeFit(Png.Encode(2, 1, Png.Rgba, 16, samples), 2).Pixels;
        Assert.Equal([0x12, 0x80, 0xFF, 255, 255, 255], rgb);

        // 16 to 8 bits divides by 257 and rounds: 0xC000 / 257 = 191.25.
        var grey16 = Decoder.DecodeFit(Png.Encode(2, 1, Png.Grey, 16, [0x4000, 0xC000]), 2).Pixels;
        Assert.Equal([64, 64, 64, 191, 191, 191], grey16);
    }

    [Fact]
    public void Grey_with_alpha_is_flattened_and_replicated()
    {
        var rgb = Decoder.DecodeFit(Png.Encode(2, 1, Png.GreyAlpha, 8, [50, 255, 50, 0]), 2).Pixels;
        Assert.Equal([50, 50, 50, 255, 255, 255], rgb);
    }

    [Fact]
    public void Cmyk_is_converted_to_rgb()
    {
        // Pure cyan ink, then no ink at all (paper white), then full black.
        var tiff = VipsTestNative.CmykTiff(3, 1, [255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255]);
        Assert.Equal(new ImageInfo(3, 1, "tiff", 4), Decoder.ReadInfo(tiff));
        var rgb = Decoder.DecodeFit(tiff, 3).Pixels;
        Assert.True(rgb[0] < 64 && rgb[1] > 128 && rgb[2] > 192, $"cyan became {rgb[0]},{rgb[1]},{rgb[2]}");
        Assert.All(rgb[3..6], v => Assert.True(v > 240, $"white became {v}"));
        Assert.All(rgb[6..9], v => Assert.True(v < 64, $"black became {v}"));
    }

    [Fact]
    public void Downscaling_is_antialiased()
    {
        // A one-pixel checkerboard must average to mid grey; point sampling would give black or white.
        const int size = 800;
        var samples = new ushort[size * size];
        for (var y = 0; y < size; y++)
        {
            for (var x = 0; x < size; x++)
            {
                samples[(y * size) + x] = (ushort)(((x + y) & 1) * 255);
            }
        }

        var pixels = Decoder.Prepare(Png.Encode(size, size, Png.Grey, 8, samples), 97, 61).Pixels.Pixels;
        Assert.All(pixels, v => Assert.InRange(v, 112, 143));
    }
}
