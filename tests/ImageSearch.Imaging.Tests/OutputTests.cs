using ImageSearch.Core;

namespace ImageSearch.Imaging.Tests;

/// <summary>DecodeFit and Thumbnail: whole image, aspect kept, never enlarged.</summary>
public sealed class OutputTests
{
    private static readonly VipsImageDecoder Decoder = new();

    [Theory]
    [InlineData(480, 480, 360)]
    [InlineData(1000, 480, 360)] // never enlarged
    [InlineData(240, 240, 180)]
    [InlineData(100, 100, 75)]
    [InlineData(1, 1, 1)]
    public void DecodeFit_keeps_the_aspect_within_the_longer_side(int maxSide, int width, int height)
    {
        var photo = TestData.Original(TestData.VariantStems[0]);
        var image = Decoder.DecodeFit(photo, maxSide);
        Assert.Equal((width, height, width * height * 3), (image.Width, image.Height, image.Pixels.Length));
    }

    [Fact]
    public void DecodeFit_at_full_size_is_the_plain_decode()
    {
        // The PNG holds exactly the pixels of the decoded JPEG.
        var stem = TestData.VariantStems[0];
        Assert.Equal(Decoder.DecodeFit(TestData.Variant(stem + ".png"), 480).Pixels, Decoder.DecodeFit(TestData.Original(stem), 480).Pixels);
    }

    [Fact]
    public void Thumbnail_is_a_small_jpeg_of_the_photo()
    {
        var stem = TestData.VariantStems[3];
        var thumbnail = Decoder.Thumbnail(TestData.Variant(stem + ".webp"), 200);
        Assert.Equal([0xFF, 0xD8, 0xFF], thumbnail[..3]);
        Assert.InRange(thumbnail.Length, 1000, 30_000);
        Assert.Equal(new ImageInfo(200, 150, "jpeg", 3), Decoder.ReadInfo(thumbnail));
        Assert.InRange(TestData.MeanAbsDiff(Decoder.DecodeFit(TestData.Original(stem), 200), Decoder.DecodeFit(thumbnail, 200)), 0, 4);

        // Never enlarged either.
        Assert.Equal(new ImageInfo(480, 360, "jpeg", 3), Decoder.ReadInfo(Decoder.Thumbnail(TestData.Original(stem), 4096)));
    }

    [Fact]
    public void Thumbnail_drops_metadata_of_the_upload()
    {
        // A grey PNG with an EXIF block: the thumbnail is a 3-band JPEG without EXIF (GPS and the like).
        var png = Png.Encode(4, 4, Png.Grey, 8, new ushort[16], exifOrientation: 1);
        var thumbnail = Decoder.Thumbnail(png, 4);
        Assert.Equal(new ImageInfo(4, 4, "jpeg", 3), Decoder.ReadInfo(thumbnail));
        Assert.Equal(-1, thumbnail.AsSpan().IndexOf("Exif"u8));
    }
}
