using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using ImageSearch.Core;

namespace ImageSearch.Imaging.Tests;

/// <summary>What a hostile file must lead to.</summary>
internal enum Expect
{
    /// <summary>A valid, if unusual, image: decodes (HTTP 200 / 202, indexed).</summary>
    Accepted,

    /// <summary>Damage a decoder may or may not notice (a flipped bit in entropy-coded data): decodes, or is refused as corrupt.</summary>
    AcceptedOrCorrupt,

    /// <summary>Refused as empty (HTTP 400).</summary>
    Empty,

    /// <summary>Refused as corrupt or truncated (HTTP 400).</summary>
    Corrupt,

    /// <summary>Refused as not an accepted image format (HTTP 415).</summary>
    Unsupported,

    /// <summary>Refused from its header for declaring too many pixels (HTTP 413).</summary>
    TooLarge,
}

/// <summary>One file of the corpus: a name with the extension an attacker would give it, the bytes, and the outcome required.</summary>
internal sealed record HostileFile(string Name, byte[] Bytes, Expect Expect, string Why)
{
    public override string ToString() => Name;

    /// <summary>The error kinds that satisfy <see cref="Expect"/> (empty for <see cref="Expect.Accepted"/>).</summary>
    public ImageErrorKind[] AllowedErrors => Expect switch
    {
        Expect.Accepted => [],
        Expect.AcceptedOrCorrupt or Expect.Corrupt => [ImageErrorKind.Corrupt],
        Expect.Empty => [ImageErrorKind.Empty],
        Expect.Unsupported => [ImageErrorKind.UnsupportedFormat],
        Expect.TooLarge => [ImageErrorKind.TooLarge],
        _ => throw new InvalidOperationException(Expect.ToString()),
    };

    /// <summary>HTTP statuses that satisfy <see cref="Expect"/> for a search (200 when accepted).</summary>
    public int[] SearchStatuses => Expect switch
    {
        Expect.Accepted => [200],
        Expect.AcceptedOrCorrupt => [200, 400],
        Expect.Empty or Expect.Corrupt => [400],
        Expect.Unsupported => [415],
        Expect.TooLarge => [413],
        _ => throw new InvalidOperationException(Expect.ToString()),
    };
}

/// <summary>
/// The hostile-input corpus, made by the tests from one real photo (nothing of it is committed):
/// truncated and bit-flipped JPEG/PNG/WebP/GIF, zero bytes, images under the wrong extension, HTML,
/// SVG, ZIP, PDF and a PHP polyglot renamed as images, decompression bombs (tiny files declaring
/// huge sizes) in four formats, a real 20,000 x 20,000 image, absurd and malformed EXIF orientation,
/// a multi-frame GIF, CMYK JPEG and TIFF, 16-bit PNGs, and degenerate sizes (1 x 1, 1 x 4000).
/// Deterministic: the same photo gives the same bytes.
/// </summary>
internal static class HostileCorpus
{
    /// <summary>Side of the real, valid, square PNG of <see cref="Huge"/>: 400 megapixels in about 400 KB.</summary>
    public const int HugeSide = 20_000;

    private static readonly Lazy<byte[]> HugePng = new(() => GreyPng(HugeSide, HugeSide));

    /// <summary>A valid 20,000 x 20,000 grey PNG (zeros), over the default pixel limit 4 times.</summary>
    public static byte[] Huge => HugePng.Value;

    /// <summary>Builds the corpus from the JPEG photo at <paramref name="photoPath"/>.</summary>
    public static IReadOnlyList<HostileFile> Build(string photoPath)
    {
        var decoder = new VipsImageDecoder();
        var jpeg = File.ReadAllBytes(photoPath);
        var small = decoder.DecodeFit(jpeg, 160);
        var png = Png.Encode(small);
        var webp = VipsTestNative.WebP(small, 80);
        var gif = VipsTestNative.Gif(small);
        var files = new List<HostileFile>
        {
            // Truncated at several points; fail_on=error makes every cut an error, not grey pixels.
            new("truncated-header.jpg", jpeg[..200], Expect.Corrupt, "JPEG cut inside its header"),
            new("truncated-10.jpg", jpeg[..(jpeg.Length / 10)], Expect.Corrupt, "JPEG cut at 10%"),
            new("truncated-90.jpg", jpeg[..(jpeg.Length * 9 / 10)], Expect.Corrupt, "JPEG cut at 90%"),
            new("truncated-50.png", png[..(png.Length / 2)], Expect.Corrupt, "PNG cut in its image data"),
            new("truncated-signature.png", png[..8], Expect.Corrupt, "PNG signature only"),
            new("truncated-50.webp", webp[..(webp.Length / 2)], Expect.Corrupt, "WebP cut in half"),
            new("truncated-60.gif", gif[..(gif.Length * 6 / 10)], Expect.AcceptedOrCorrupt, "GIF cut at 60% (GIF decoders may keep the rows they have)"),

            // Bit flips: in entropy-coded data libjpeg only warns (accepted, damaged); in headers or
            // checksummed chunks they are refused. Either way: never a crash or a 5xx.
            new("bitflip-data.jpg", FlipBits(jpeg, jpeg.Length / 2, jpeg.Length - 2, 97), Expect.AcceptedOrCorrupt, "JPEG with bytes flipped in its entropy-coded data"),
            new("bitflip-header.jpg", FlipBits(jpeg, 2, 400, 7), Expect.AcceptedOrCorrupt, "JPEG with bytes flipped in its markers and tables"),
            new("bitflip.png", FlipBits(png, 40, png.Length - 12, 301), Expect.AcceptedOrCorrupt, "PNG with flipped bytes (CRC mismatches)"),
            new("bitflip.webp", FlipBits(webp, 30, webp.Length, 53), Expect.AcceptedOrCorrupt, "WebP with flipped bytes"),
            new("bitflip.gif", FlipBits(gif, 20, gif.Length, 41), Expect.AcceptedOrCorrupt, "GIF with flipped bytes"),

            new("zero-bytes.jpg", [], Expect.Empty, "zero-byte file"),
            new("one-byte.png", [0x89], Expect.Unsupported, "a single byte"),

            // The name lies; the content decides (uploads are stored under the found format's extension).
            new("png-named.jpg", png, Expect.Accepted, "a PNG named .jpg"),
            new("jpeg-named.webp", jpeg, Expect.Accepted, "a JPEG named .webp"),
            new("webp-named.gif", webp, Expect.Accepted, "a WebP named .gif"),

            // Not images at all, named as images.
            new("page.jpg", "<!doctype html><html><script>alert(document.cookie)</script></html>\n"u8.ToArray(), Expect.Unsupported, "HTML with a script named .jpg"),
            new("drawing.png", Svg, Expect.Unsupported, "SVG (with an external entity and a script) named .png"),
            new("archive.jpg", Zip(), Expect.Unsupported, "a ZIP archive named .jpg"),
            new("document.webp", "%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"u8.ToArray(), Expect.Unsupported, "a PDF named .webp"),
            new("shell.gif", "GIF89a<?php system($_GET['c']); ?>"u8.ToArray(), Expect.Corrupt, "a PHP polyglot starting with a GIF signature"),
            new("text.png", Encoding.UTF8.GetBytes(new string('A', 5000)), Expect.Unsupported, "plain text named .png"),

            // Decompression bombs: a few KB declaring gigapixels; refused from the header, no pixel decoded.
            new("bomb-30000.png", Png.Declaring(30_000, 30_000, rows: 4), Expect.TooLarge, "PNG declaring 30,000 x 30,000 with 4 rows of data"),
            new("bomb-65000.jpg", WithJpegSize(jpeg, 65_000, 65_000), Expect.TooLarge, "JPEG whose frame header declares 65,000 x 65,000"),
            new("bomb-16383.webp", WebPDeclaring(16_383, 16_383), Expect.TooLarge, "lossless WebP whose header declares 16,383 x 16,383 (the format's largest)"),
            new("bomb-65535.gif", WithGifFrame(gif, 65_535, 65_535), Expect.TooLarge, "GIF whose screen and first frame declare 65,535 x 65,535"),
            new("screen-65535.gif", WithGifScreen(gif, 65_535, 65_535), Expect.Accepted, "GIF whose logical screen alone declares 65,535 x 65,535 (sized by its frame)"),
            new("huge-20000.png", Huge, Expect.TooLarge, "a real, valid 20,000 x 20,000 PNG (400 megapixels)"),

            // EXIF orientation: out of range values and broken EXIF are ignored (the image stays upright).
            new("exif-orientation-0.jpg", WithExifOrientation(jpeg, 0), Expect.Accepted, "EXIF Orientation 0"),
            new("exif-orientation-9.jpg", WithExifOrientation(jpeg, 9), Expect.Accepted, "EXIF Orientation 9"),
            new("exif-orientation-65535.jpg", WithExifOrientation(jpeg, 65_535), Expect.Accepted, "EXIF Orientation 65535"),
            new("exif-broken-ifd.jpg", WithBrokenExif(jpeg), Expect.Accepted, "EXIF whose IFD claims 65,535 entries at an offset past its end"),
            new("exif-orientation-9.png", Png.Encode(small, exifOrientation: 9), Expect.Accepted, "PNG eXIf chunk with Orientation 9"),

            // Valid images in the less common corners of the formats.
            new("animated.gif", VipsTestNative.AnimatedGif(small, Invert(small), small), Expect.Accepted, "a 3-frame animated GIF (first frame used)"),
            new("cmyk.jpg", VipsTestNative.CmykJpeg(small.Width, small.Height, ToCmyk(small)), Expect.Accepted, "CMYK JPEG (Adobe, inverted)"),
            new("cmyk.tif", VipsTestNative.CmykTiff(small.Width, small.Height, ToCmyk(small)), Expect.Accepted, "CMYK TIFF"),
            new("rgb16.png", Png16(small, alpha: false), Expect.Accepted, "16-bit RGB PNG"),
            new("grey-alpha16.png", Png16(small, alpha: true), Expect.Accepted, "16-bit grey + alpha PNG"),
            new("one-pixel.png", Png.Encode(new RgbImage(1, 1, [200, 10, 10])), Expect.Accepted, "a 1 x 1 PNG"),
            new("line-4000x1.png", Png.Encode(new RgbImage(4000, 1, Gradient(4000, 1))), Expect.Accepted, "a 4000 x 1 PNG (extreme aspect ratio)"),
            new("line-1x4000.jpg", VipsTestNative.Jpeg(new RgbImage(1, 4000, Gradient(1, 4000)), 90), Expect.Accepted, "a 1 x 4000 JPEG"),
            new("tiny-16x16.webp", VipsTestNative.WebP(new RgbImage(16, 16, Gradient(16, 16)), 90), Expect.Accepted, "a 16 x 16 WebP (SIFT's lower bound)"),
            new("zero-width.png", WithPngSize(png, 0, small.Height), Expect.Corrupt, "PNG whose header declares a width of 0"),
        };
        return files;
    }

    /// <summary>An SVG with an external entity (XXE) and a script: must never reach an SVG parser.</summary>
    private static byte[] Svg => """
        <?xml version="1.0"?>
        <!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
        <svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><text>&xxe;</text><script>alert(1)</script></svg>
        """u8.ToArray();

    private static byte[] Zip()
    {
        using var stream = new MemoryStream();
        using (var zip = new ZipArchive(stream, ZipArchiveMode.Create, leaveOpen: true))
        {
            using var entry = zip.CreateEntry("photo.jpg").Open();
            entry.Write(new byte[4096]);
        }

        return stream.ToArray();
    }

    /// <summary>XORs every <paramref name="step"/>-th byte in [from, to) with 0x5A.</summary>
    internal static byte[] FlipBits(byte[] data, int from, int to, int step)
    {
        var copy = (byte[])data.Clone();
        for (var i = from; i < Math.Min(to, copy.Length); i += step)
        {
            copy[i] ^= 0x5A;
        }

        return copy;
    }

    /// <summary>The JPEG with the size in its (first) frame header replaced.</summary>
    private static byte[] WithJpegSize(byte[] jpeg, int width, int height)
    {
        var copy = (byte[])jpeg.Clone();
        for (var i = 2; i + 9 < copy.Length;)
        {
            if (copy[i] != 0xFF)
            {
                throw new InvalidOperationException("JPEG marker expected at " + i);
            }

            var marker = copy[i + 1];
            if (marker is >= 0xC0 and <= 0xCF and not 0xC4 and not 0xC8 and not 0xCC)
            {
                BinaryPrimitives.WriteUInt16BigEndian(copy.AsSpan(i + 5), (ushort)height);
                BinaryPrimitives.WriteUInt16BigEndian(copy.AsSpan(i + 7), (ushort)width);
                return copy;
            }

            i += 2 + BinaryPrimitives.ReadUInt16BigEndian(copy.AsSpan(i + 2));
        }

        throw new InvalidOperationException("No frame header found.");
    }

    /// <summary>An APP1 Exif segment holding one Orientation entry, inserted right after SOI.</summary>
    internal static byte[] WithExifOrientation(byte[] jpeg, int orientation)
    {
        var tiff = new byte[26];
        "MM\0*"u8.CopyTo(tiff);
        BinaryPrimitives.WriteInt32BigEndian(tiff.AsSpan(4), 8);
        BinaryPrimitives.WriteInt16BigEndian(tiff.AsSpan(8), 1);
        BinaryPrimitives.WriteUInt16BigEndian(tiff.AsSpan(10), 0x0112);
        BinaryPrimitives.WriteUInt16BigEndian(tiff.AsSpan(12), 3); // SHORT
        BinaryPrimitives.WriteInt32BigEndian(tiff.AsSpan(14), 1);
        BinaryPrimitives.WriteUInt16BigEndian(tiff.AsSpan(18), (ushort)orientation);
        return InsertApp1(jpeg, tiff);
    }

    /// <summary>EXIF whose IFD0 claims 65,535 entries and whose next-IFD offset points far past the segment.</summary>
    private static byte[] WithBrokenExif(byte[] jpeg)
    {
        var tiff = new byte[26];
        "II*\0"u8.CopyTo(tiff);
        BinaryPrimitives.WriteInt32LittleEndian(tiff.AsSpan(4), 8);
        BinaryPrimitives.WriteUInt16LittleEndian(tiff.AsSpan(8), 0xFFFF);
        BinaryPrimitives.WriteUInt16LittleEndian(tiff.AsSpan(10), 0x0112);
        BinaryPrimitives.WriteUInt16LittleEndian(tiff.AsSpan(12), 3);
        BinaryPrimitives.WriteInt32LittleEndian(tiff.AsSpan(14), int.MaxValue); // count
        BinaryPrimitives.WriteInt32LittleEndian(tiff.AsSpan(18), 0x7FFF_FFF0); // value offset
        BinaryPrimitives.WriteInt32LittleEndian(tiff.AsSpan(22), 0x7FFF_FFF0); // next IFD
        return InsertApp1(jpeg, tiff);
    }

    private static byte[] InsertApp1(byte[] jpeg, byte[] tiff)
    {
        var segment = new byte[2 + 2 + 6 + tiff.Length];
        segment[0] = 0xFF;
        segment[1] = 0xE1;
        BinaryPrimitives.WriteUInt16BigEndian(segment.AsSpan(2), (ushort)(segment.Length - 2));
        "Exif\0\0"u8.CopyTo(segment.AsSpan(4));
        tiff.CopyTo(segment, 10);
        return [.. jpeg[..2], .. segment, .. jpeg[2..]];
    }

    /// <summary>
    /// A lossless (VP8L) WebP whose header declares <paramref name="width"/> x <paramref name="height"/>
    /// (at most 16,383 each), followed by a few bytes of bitstream: a bomb only its header can defuse.
    /// </summary>
    private static byte[] WebPDeclaring(int width, int height)
    {
        var vp8l = new byte[8 + 5 + 31]; // an even payload: RIFF chunks are padded to even sizes
        "VP8L"u8.CopyTo(vp8l);
        BinaryPrimitives.WriteInt32LittleEndian(vp8l.AsSpan(4), vp8l.Length - 8);
        vp8l[8] = 0x2F; // signature
        var bits = (uint)(width - 1) | ((uint)(height - 1) << 14); // no alpha, version 0
        BinaryPrimitives.WriteUInt32LittleEndian(vp8l.AsSpan(9), bits);
        for (var i = 13; i < vp8l.Length; i++)
        {
            vp8l[i] = (byte)(i * 37);
        }

        var riff = new byte[12];
        "RIFF"u8.CopyTo(riff);
        BinaryPrimitives.WriteInt32LittleEndian(riff.AsSpan(4), 4 + vp8l.Length);
        "WEBP"u8.CopyTo(riff.AsSpan(8));
        return [.. riff, .. vp8l];
    }

    private static void WriteUInt24(Span<byte> target, int value)
    {
        target[0] = (byte)value;
        target[1] = (byte)(value >> 8);
        target[2] = (byte)(value >> 16);
    }

    /// <summary>The GIF with its screen and its first image descriptor declaring the size.</summary>
    private static byte[] WithGifFrame(byte[] gif, int width, int height)
    {
        var copy = WithGifScreen(gif, width, height);
        var at = 13 + ((copy[10] & 0x80) != 0 ? 3 * (2 << (copy[10] & 7)) : 0);
        while (copy[at] == 0x21)
        {
            // Skip extension blocks: label, then sub-blocks until a zero length.
            at += 2;
            while (copy[at] != 0)
            {
                at += copy[at] + 1;
            }

            at++;
        }

        if (copy[at] != 0x2C)
        {
            throw new InvalidOperationException("No image descriptor found.");
        }

        BinaryPrimitives.WriteUInt16LittleEndian(copy.AsSpan(at + 5), (ushort)width);
        BinaryPrimitives.WriteUInt16LittleEndian(copy.AsSpan(at + 7), (ushort)height);
        return copy;
    }

    private static byte[] WithGifScreen(byte[] gif, int width, int height)
    {
        var copy = (byte[])gif.Clone();
        BinaryPrimitives.WriteUInt16LittleEndian(copy.AsSpan(6), (ushort)width);
        BinaryPrimitives.WriteUInt16LittleEndian(copy.AsSpan(8), (ushort)height);
        return copy;
    }

    /// <summary>The PNG with its IHDR size replaced and the chunk's CRC fixed, so only the value is wrong.</summary>
    private static byte[] WithPngSize(byte[] png, int width, int height)
    {
        var copy = (byte[])png.Clone();
        BinaryPrimitives.WriteInt32BigEndian(copy.AsSpan(16), width);
        BinaryPrimitives.WriteInt32BigEndian(copy.AsSpan(20), height);
        BinaryPrimitives.WriteUInt32BigEndian(copy.AsSpan(29), Crc32(copy.AsSpan(12, 17)));
        return copy;
    }

    private static uint Crc32(ReadOnlySpan<byte> data)
    {
        var crc = 0xFFFFFFFFu;
        foreach (var b in data)
        {
            crc ^= b;
            for (var k = 0; k < 8; k++)
            {
                crc = (crc & 1) != 0 ? 0xEDB88320u ^ (crc >> 1) : crc >> 1;
            }
        }

        return crc ^ 0xFFFFFFFFu;
    }

    private static byte[] Png16(RgbImage image, bool alpha)
    {
        var n = image.Width * image.Height;
        if (!alpha)
        {
            var rgb = new ushort[n * 3];
            for (var i = 0; i < rgb.Length; i++)
            {
                rgb[i] = (ushort)(image.Pixels[i] * 257);
            }

            return Png.Encode(image.Width, image.Height, Png.Rgb, 16, rgb);
        }

        var greyAlpha = new ushort[n * 2];
        for (var i = 0; i < n; i++)
        {
            greyAlpha[2 * i] = (ushort)(image.Pixels[3 * i + 1] * 257);
            greyAlpha[(2 * i) + 1] = (ushort)(i % image.Width < image.Width / 2 ? 65535 : 20000);
        }

        return Png.Encode(image.Width, image.Height, Png.GreyAlpha, 16, greyAlpha);
    }

    private static byte[] ToCmyk(RgbImage image)
    {
        var cmyk = new byte[image.Width * image.Height * 4];
        for (int i = 0, p = 0; p < image.Pixels.Length; i += 4, p += 3)
        {
            var (r, g, b) = (image.Pixels[p], image.Pixels[p + 1], image.Pixels[p + 2]);
            var k = 255 - Math.Max(r, Math.Max(g, b));
            cmyk[i] = (byte)(255 - r - k);
            cmyk[i + 1] = (byte)(255 - g - k);
            cmyk[i + 2] = (byte)(255 - b - k);
            cmyk[i + 3] = (byte)k;
        }

        return cmyk;
    }

    private static RgbImage Invert(RgbImage image) => new(image.Width, image.Height, image.Pixels.Select(p => (byte)(255 - p)).ToArray());

    private static byte[] Gradient(int width, int height)
    {
        var pixels = new byte[width * height * 3];
        for (var y = 0; y < height; y++)
        {
            for (var x = 0; x < width; x++)
            {
                var i = ((y * width) + x) * 3;
                pixels[i] = (byte)(x * 7);
                pixels[i + 1] = (byte)(y * 5);
                pixels[i + 2] = (byte)((x + y) * 3);
            }
        }

        return pixels;
    }

    /// <summary>A valid 8-bit grey PNG of zeros, written row by row so the 400 MB of pixels never exist at once.</summary>
    internal static byte[] GreyPng(int width, int height)
    {
        var row = new byte[width + 1]; // filter byte 0, then zeros
        using var idat = new MemoryStream();
        using (var z = new ZLibStream(idat, CompressionLevel.Fastest, leaveOpen: true))
        {
            for (var y = 0; y < height; y++)
            {
                z.Write(row);
            }
        }

        return Png.Raw(width, height, Png.Grey, 8, idat.ToArray());
    }
}
