using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using ImageSearch.Core;

namespace ImageSearch.Imaging.Tests;

/// <summary>
/// A minimal PNG writer, so tests can make exactly the inputs they need: any colour type and bit
/// depth, an EXIF orientation (eXIf chunk), or a header that declares more pixels than it holds.
/// </summary>
internal static class Png
{
    /// <summary>PNG colour types.</summary>
    public const int Grey = 0, Rgb = 2, GreyAlpha = 4, Rgba = 6;

    private static readonly uint[] CrcTable = MakeCrcTable();

    /// <summary>Encodes samples (row-major, interleaved, <paramref name="bitDepth"/> 8 or 16 bits each).</summary>
    public static byte[] Encode(int width, int height, int colourType, int bitDepth, ReadOnlySpan<ushort> samples, int? exifOrientation = null)
    {
        var channels = Channels(colourType);
        var bytesPerSample = bitDepth / 8;
        Assert.Equal(width * height * channels, samples.Length);
        var rowBytes = width * channels * bytesPerSample;
        var raw = new byte[height * (1 + rowBytes)];
        for (var y = 0; y < height; y++)
        {
            var row = raw.AsSpan((y * (1 + rowBytes)) + 1, rowBytes); // filter byte 0 = None
            for (var i = 0; i < width * channels; i++)
            {
                var v = samples[(y * width * channels) + i];
                if (bytesPerSample == 1)
                {
                    row[i] = (byte)v;
                }
                else
                {
                    BinaryPrimitives.WriteUInt16BigEndian(row.Slice(i * 2, 2), v);
                }
            }
        }

        return Assemble(width, height, colourType, bitDepth, raw, exifOrientation);
    }

    /// <summary>An 8-bit RGB PNG of <paramref name="image"/>, optionally tagged with an EXIF orientation.</summary>
    public static byte[] Encode(RgbImage image, int? exifOrientation = null)
    {
        var samples = new ushort[image.Pixels.Length];
        for (var i = 0; i < samples.Length; i++)
        {
            samples[i] = image.Pixels[i];
        }

        return Encode(image.Width, image.Height, Rgb, 8, samples, exifOrientation);
    }

    /// <summary>
    /// A decompression bomb: the header declares <paramref name="width"/> x <paramref name="height"/>
    /// RGB pixels, while the image data holds only the first <paramref name="rows"/> rows (zeros).
    /// </summary>
    public static byte[] Declaring(int width, int height, int rows)
    {
        var raw = new byte[rows * (1 + (width * 3))];
        return Assemble(width, height, Rgb, 8, raw, exifOrientation: null);
    }

    /// <summary>A PNG of already deflated image data (<paramref name="idat"/>), for data too big to hold raw.</summary>
    public static byte[] Raw(int width, int height, int colourType, int bitDepth, byte[] idat)
    {
        using var png = new MemoryStream();
        WriteHeader(png, width, height, colourType, bitDepth);
        WriteChunk(png, "IDAT", idat);
        WriteChunk(png, "IEND", []);
        return png.ToArray();
    }

    private static int Channels(int colourType) => colourType switch
    {
        Grey => 1,
        Rgb => 3,
        GreyAlpha => 2,
        Rgba => 4,
        _ => throw new ArgumentOutOfRangeException(nameof(colourType)),
    };

    private static byte[] Assemble(int width, int height, int colourType, int bitDepth, byte[] raw, int? exifOrientation)
    {
        using var png = new MemoryStream();
        WriteHeader(png, width, height, colourType, bitDepth);

        if (exifOrientation is { } orientation)
        {
            // A big-endian TIFF structure with one IFD entry: Orientation (0x0112), SHORT, count 1.
            var exif = new byte[26];
            "MM\0*"u8.CopyTo(exif);
            BinaryPrimitives.WriteInt32BigEndian(exif.AsSpan(4), 8);
            BinaryPrimitives.WriteInt16BigEndian(exif.AsSpan(8), 1);
            BinaryPrimitives.WriteUInt16BigEndian(exif.AsSpan(10), 0x0112);
            BinaryPrimitives.WriteUInt16BigEndian(exif.AsSpan(12), 3);
            BinaryPrimitives.WriteInt32BigEndian(exif.AsSpan(14), 1);
            BinaryPrimitives.WriteUInt16BigEndian(exif.AsSpan(18), (ushort)orientation);
            WriteChunk(png, "eXIf", exif); // the next-IFD offset (bytes 22..25) stays 0
        }

        using (var idat = new MemoryStream())
        {
            using (var z = new ZLibStream(idat, CompressionLevel.Fastest, leaveOpen: true))
            {
                z.Write(raw);
            }

            WriteChunk(png, "IDAT", idat.ToArray());
        }

        WriteChunk(png, "IEND", []);
        return png.ToArray();
    }

    private static void WriteHeader(Stream png, int width, int height, int colourType, int bitDepth)
    {
        png.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        var ihdr = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(ihdr, width);
        BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), height);
        ihdr[8] = (byte)bitDepth;
        ihdr[9] = (byte)colourType; // then compression, filter and interlace methods: 0
        WriteChunk(png, "IHDR", ihdr);
    }

    private static void WriteChunk(Stream output, string type, ReadOnlySpan<byte> data)
    {
        Span<byte> word = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(word, data.Length);
        output.Write(word);
        var typeBytes = Encoding.ASCII.GetBytes(type);
        output.Write(typeBytes);
        output.Write(data);
        var crc = Crc(Crc(0xFFFFFFFFu, typeBytes), data) ^ 0xFFFFFFFFu;
        BinaryPrimitives.WriteUInt32BigEndian(word, crc);
        output.Write(word);
    }

    private static uint Crc(uint crc, ReadOnlySpan<byte> data)
    {
        foreach (var b in data)
        {
            crc = CrcTable[(crc ^ b) & 0xFF] ^ (crc >> 8);
        }

        return crc;
    }

    private static uint[] MakeCrcTable()
    {
        var table = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            var c = n;
            for (var k = 0; k < 8; k++)
            {
                c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            }

            table[n] = c;
        }

        return table;
    }
}
