using ImageSearch.Core;

namespace ImageSearch.Imaging.Tests;

/// <summary>Bad input fails with the right kind and a reason a person can act on.</summary>
/// <remarks>
/// Serial: the reason text comes from libvips' single process-wide error buffer, which decodes
/// failing at the same moment on other threads may share (the kind never depends on it).
/// </remarks>
[Collection(nameof(SerialCollection))]
public sealed class ErrorTests
{
    private static readonly VipsImageDecoder Decoder = new();

    public static TheoryData<string, ImageErrorKind, string> BrokenFiles => new()
    {
        { "broken-zero.jpg", ImageErrorKind.Empty, "empty" },
        { "broken-html.png", ImageErrorKind.UnsupportedFormat, "<!doctype html>" },
        { "broken-text.jpg", ImageErrorKind.UnsupportedFormat, "this is not an image" },
        { "broken-truncated.jpg", ImageErrorKind.Corrupt, "JPEG image (decoding pixels failed): VipsJpeg: Premature end of input file" },
        { "broken-header-only.jpg", ImageErrorKind.Corrupt, "Premature end of input file" },
        { "broken-truncated.png", ImageErrorKind.Corrupt, "PNG image (decoding pixels failed): vipspng: libpng read error" },
    };

    [Theory]
    [MemberData(nameof(BrokenFiles))]
    public void Broken_files_fail_with_kind_and_reason(string name, ImageErrorKind kind, string reason)
    {
        var bytes = TestData.Variant(name);
        foreach (var decode in new Action[]
                 {
                     () => Decoder.Prepare(bytes, 224, 224),
                     () => Decoder.Prepare(bytes, 224, 224, new BoundingBox(10, 10, 100, 100)),
                     () => Decoder.DecodeFit(bytes, 300),
                     () => Decoder.PrepareAndFit(bytes, 224, 224, 384),
                     () => Decoder.PrepareAndFit(bytes, 224, 224, 384, new BoundingBox(10, 10, 100, 100)),
                     () => Decoder.Thumbnail(bytes, 100),
                 })
        {
            var e = Assert.Throws<InvalidImageException>(decode);
            Assert.Equal(kind, e.Kind);
            Assert.Contains(reason, e.Message, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("broken-truncated.jpg", "jpeg")]
    [InlineData("broken-header-only.jpg", "jpeg")]
    [InlineData("broken-truncated.png", "png")]
    public void Truncated_files_have_a_readable_header(string name, string format)
    {
        // ReadInfo reads the header only; the missing pixel data is found by the decoding calls.
        Assert.Equal(new ImageInfo(480, 360, format, 3), Decoder.ReadInfo(TestData.Variant(name)));
    }

    [Fact]
    public void Flipped_bits_in_jpeg_data_decode_with_damage()
    {
        // Decision: libjpeg only warns about corrupt entropy-coded data, and so do many real photos
        // with harmless defects, so such files decode (fail_on=error). Truncation does fail (above).
        var stem = TestData.VariantStems[0];
        var damaged = Decoder.Prepare(TestData.Variant("broken-bitflip.jpg"), 224, 224);
        Assert.Equal((224, 224), (damaged.Pixels.Width, damaged.Pixels.Height));
        Assert.True(TestData.MeanAbsDiff(Decoder.Prepare(TestData.Original(stem), 224, 224).Pixels, damaged.Pixels) > 5);
    }

    [Fact]
    public void Recognised_format_with_unreadable_header_is_corrupt()
    {
        byte[] jpeg = [0xFF, 0xD8, 0xFF, 0xE0, .. new byte[100]];
        var e = Assert.Throws<InvalidImageException>(() => Decoder.ReadInfo(jpeg));
        Assert.Equal(ImageErrorKind.Corrupt, e.Kind);
        Assert.Contains("JPEG image (reading the header failed): VipsJpeg: Premature end of input file", e.Message, StringComparison.Ordinal);

        // libpng reports this one only as a GLib warning, which the decoder picks up.
        var png = TestData.Variant(TestData.VariantStems[0] + ".png");
        png[20] ^= 0xFF; // inside IHDR, so its CRC no longer matches
        e = Assert.Throws<InvalidImageException>(() => Decoder.ReadInfo(png));
        Assert.Equal(ImageErrorKind.Corrupt, e.Kind);
        Assert.Contains("PNG image (reading the header failed): IHDR: CRC error", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Truncated_tiff_is_corrupt_not_foreign()
    {
        // libtiff's own check rejects it, and libvips then offers it to ImageMagick; the TIFF
        // signature tells the decoder it is a broken TIFF.
        var tiff = VipsTestNative.Tiff(Decoder.DecodeFit(TestData.Original(TestData.VariantStems[0]), 120));
        var e = Assert.Throws<InvalidImageException>(() => Decoder.Prepare(tiff[..(tiff.Length / 2)], 64, 64));
        Assert.Equal(ImageErrorKind.Corrupt, e.Kind);
        Assert.Contains("TIFF image (reading the header failed): ", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Decompression_bomb_is_refused_from_its_header()
    {
        // 30000 x 30000 RGB = 2.7 GB of pixels declared in a file of a few KB.
        var bomb = Png.Declaring(30000, 30000, rows: 4);
        Assert.InRange(bomb.Length, 1, 16 * 1024);

        var before = GC.GetAllocatedBytesForCurrentThread();
        foreach (var decode in new Action[]
                 {
                     () => Decoder.ReadInfo(bomb),
                     () => Decoder.Prepare(bomb, 224, 224),
                     () => Decoder.Prepare(bomb, 224, 224, new BoundingBox(0, 0, 100, 100)),
                     () => Decoder.DecodeFit(bomb, 100),
                     () => Decoder.Thumbnail(bomb, 100),
                 })
        {
            var e = Assert.Throws<InvalidImageException>(decode);
            Assert.Equal(ImageErrorKind.TooLarge, e.Kind);
            Assert.Contains("30000x30000 (900000000 pixels); the limit is 100000000 pixels", e.Message, StringComparison.Ordinal);
        }

        Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - before, 0, 1 << 20);
        // libvips' own pixel memory never came near the declared size (it is process-wide, so
        // other tests' decodes count too: all far below this).
        Assert.InRange(VipsTestNative.TrackedMemoryHighWater, 0, 256L << 20);

        // The fixture: a complete, valid 20000 x 20000 grey PNG of zeros (400 megapixels in 380 KB).
        var fixture = Assert.Throws<InvalidImageException>(() => Decoder.Prepare(TestData.Variant("bomb-20000x20000.png"), 224, 224));
        Assert.Equal(ImageErrorKind.TooLarge, fixture.Kind);
        Assert.Contains("20000x20000 (400000000 pixels)", fixture.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Pixel_limit_is_inclusive_and_applies_to_every_call()
    {
        var photo = TestData.Original(TestData.VariantStems[0]);
        var atLimit = new DecodeLimits(MaxPixels: 480 * 360);
        Assert.Equal(480, Decoder.ReadInfo(photo, atLimit).Width);

        var below = new DecodeLimits(MaxPixels: (480 * 360) - 1);
        foreach (var decode in new Action[]
                 {
                     () => Decoder.ReadInfo(photo, below),
                     () => Decoder.Prepare(photo, 32, 32, null, below),
                     () => Decoder.DecodeFit(photo, 32, below),
                     () => Decoder.PrepareAndFit(photo, 32, 32, 64, null, below),
                     () => Decoder.Thumbnail(photo, 32, below),
                 })
        {
            Assert.Equal(ImageErrorKind.TooLarge, Assert.Throws<InvalidImageException>(decode).Kind);
        }
    }

    [Fact]
    public void Byte_limit_is_checked_before_anything_else()
    {
        var photo = TestData.Original(TestData.VariantStems[0]);
        Assert.Equal(480, Decoder.ReadInfo(photo, new DecodeLimits(MaxBytes: photo.Length)).Width);

        var e = Assert.Throws<InvalidImageException>(() => Decoder.Prepare(photo, 32, 32, null, new DecodeLimits(MaxBytes: photo.Length - 1)));
        Assert.Equal(ImageErrorKind.TooLarge, e.Kind);
        Assert.Contains($"{photo.Length} bytes", e.Message, StringComparison.Ordinal);

        // Even garbage over the limit is "too large", not "unsupported": nothing was read.
        var garbage = new byte[1000];
        Assert.Equal(ImageErrorKind.TooLarge, Assert.Throws<InvalidImageException>(() => Decoder.ReadInfo(garbage, new DecodeLimits(MaxBytes: 999))).Kind);
    }

    [Fact]
    public void Output_sizes_are_validated()
    {
        var photo = TestData.Original(TestData.VariantStems[0]);
        Assert.Throws<ArgumentOutOfRangeException>(() => Decoder.Prepare(photo, 0, 224));
        Assert.Throws<ArgumentOutOfRangeException>(() => Decoder.Prepare(photo, 224, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Decoder.Prepare(photo, VipsImageDecoder.MaxOutputSide + 1, 224));
        Assert.Throws<ArgumentOutOfRangeException>(() => Decoder.DecodeFit(photo, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => Decoder.Thumbnail(photo, 0));
    }
}
