using ImageSearch.Core;

namespace ImageSearch.Imaging.Tests;

/// <summary>EXIF orientation: sizes are reported and boxes given in the upright (displayed) image.</summary>
public sealed class OrientationTests
{
    private static readonly VipsImageDecoder Decoder = new();

    [Theory]
    [MemberData(nameof(TestData.Stems), MemberType = typeof(TestData))]
    public void Exif6_jpeg_reports_and_decodes_the_upright_photo(string stem)
    {
        // The file stores the photo rotated to 360x480 with Orientation=6, which restores it.
        var rotated = TestData.Variant(stem + ".exif6.jpg");
        var original = TestData.Original(stem);

        Assert.Equal(new ImageInfo(480, 360, "jpeg", 3), Decoder.ReadInfo(rotated));
        // The rotated copy was saved again at quality 92, which costs up to 4 on the flower bed's
        // fine detail; a wrong turn or flip would cost tens.
        const double requantised = 4.5;
        Assert.InRange(TestData.MeanAbsDiff(Decoder.DecodeFit(original, 480), Decoder.DecodeFit(rotated, 480)), 0, requantised);
        Assert.InRange(TestData.MeanAbsDiff(Decoder.Prepare(original, 224, 224).Pixels, Decoder.Prepare(rotated, 224, 224).Pixels), 0, requantised);

        var box = new BoundingBox(300, 40, 150, 200); // in upright pixels
        var fromRotated = Decoder.Prepare(rotated, 96, 128, box);
        Assert.Equal(box, fromRotated.Region);
        Assert.InRange(TestData.MeanAbsDiff(Decoder.Prepare(original, 96, 128, box).Pixels, fromRotated.Pixels), 0, requantised);
    }

    public static TheoryData<int> Orientations => [1, 2, 3, 4, 5, 6, 7, 8];

    [Theory]
    [MemberData(nameof(Orientations))]
    public void Every_exif_orientation_is_applied_to_pixels_size_and_box(int orientation)
    {
        var upright = Decoder.DecodeFit(TestData.Original(TestData.VariantStems[1]), 480);
        var stored = Store(upright, orientation);
        var png = Png.Encode(stored, orientation);

        Assert.Equal(new ImageInfo(480, 360, "png", 3), Decoder.ReadInfo(png));
        // No resampling at full size: rotation and flips are exact.
        Assert.Equal(upright.Pixels, Decoder.DecodeFit(png, 480).Pixels);

        var reference = Png.Encode(upright);
        foreach (var box in new BoundingBox[] { new(0, 0, 480, 360), new(37, 201, 170, 90), new(350, 10, 400, 400) })
        {
            var expected = Decoder.Prepare(reference, 120, 80, box);
            var actual = Decoder.Prepare(png, 120, 80, box);
            Assert.Equal(expected.Region, actual.Region);
            // Resampling a transposed image rounds differently, nothing more.
            Assert.InRange(TestData.MeanAbsDiff(expected.Pixels, actual.Pixels), 0, 1.0);
        }
    }

    [Fact]
    public void Thumbnail_of_a_rotated_photo_is_upright_and_carries_no_orientation()
    {
        var stem = TestData.VariantStems[0];
        var thumbnail = Decoder.Thumbnail(TestData.Variant(stem + ".exif6.jpg"), 160);

        // Were the orientation tag kept, the pixels would be turned a second time on display.
        Assert.Equal(new ImageInfo(160, 120, "jpeg", 3), Decoder.ReadInfo(thumbnail));
        var expected = Decoder.DecodeFit(TestData.Original(stem), 160);
        Assert.InRange(TestData.MeanAbsDiff(expected, Decoder.DecodeFit(thumbnail, 160)), 0, 4);
    }

    /// <summary>
    /// The pixels a file with this orientation stores so that applying the orientation gives
    /// <paramref name="upright"/>: upright pixel (x, y) lives at stored (u, v) per the EXIF definitions.
    /// </summary>
    private static RgbImage Store(RgbImage upright, int orientation)
    {
        var (w, h) = (upright.Width, upright.Height);
        var swap = orientation >= 5;
        var (sw, sh) = swap ? (h, w) : (w, h);
        var pixels = new byte[upright.Pixels.Length];
        for (var y = 0; y < h; y++)
        {
            for (var x = 0; x < w; x++)
            {
                var (u, v) = orientation switch
                {
                    1 => (x, y),
                    2 => (sw - 1 - x, y),
                    3 => (sw - 1 - x, sh - 1 - y),
                    4 => (x, sh - 1 - y),
                    5 => (y, x),
                    6 => (y, sh - 1 - x),
                    7 => (sw - 1 - y, sh - 1 - x),
                    _ => (sw - 1 - y, x),
                };
                upright.Pixels.AsSpan(((y * w) + x) * 3, 3).CopyTo(pixels.AsSpan(((v * sw) + u) * 3, 3));
            }
        }

        return new RgbImage(sw, sh, pixels);
    }
}
