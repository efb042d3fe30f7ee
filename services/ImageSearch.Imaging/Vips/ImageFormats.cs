namespace ImageSearch.Imaging.Vips;

/// <summary>How a loader can decode at reduced size, which saves most of the decode time of big photos.</summary>
internal enum ShrinkOnLoad
{
    /// <summary>Decodes at full size only.</summary>
    None,

    /// <summary>libjpeg DCT scaling: option "shrink" = 1, 2, 4 or 8.</summary>
    JpegShrink,

    /// <summary>libwebp's scaled decoding (area-averaging rescaler): option "scale" = 0..1.</summary>
    WebpScale,
}

/// <summary>A libvips loader this decoder accepts for untrusted input.</summary>
/// <param name="Name">Short format name reported in <see cref="Core.ImageInfo.Format"/>.</param>
/// <param name="Shrink">Shrink-on-load support.</param>
internal sealed record AcceptedFormat(string Name, ShrinkOnLoad Shrink);

/// <summary>
/// The allow-list of libvips loaders, keyed by the GType name prefix that
/// vips_foreign_find_load_buffer returns (e.g. "VipsForeignLoadJpegBuffer").
/// </summary>
/// <remarks>
/// Detection is by content, so the allow-list is what keeps bytes away from loaders we do not want
/// to expose. libvips' own untrusted block (vips_block_untrusted_set, which the decoder turns on)
/// refuses ImageMagick, PDF, SVG, JPEG 2000, JPEG XL and Radiance in 8.14, but that list is the
/// library's to change, and find_load_buffer still names blocked loaders; so everything not listed
/// here is refused as an unsupported format before any loader runs.
/// </remarks>
internal static class ImageFormats
{
    private static readonly AcceptedFormat Jpeg = new("jpeg", ShrinkOnLoad.JpegShrink);
    private static readonly AcceptedFormat Png = new("png", ShrinkOnLoad.None);
    private static readonly AcceptedFormat WebP = new("webp", ShrinkOnLoad.WebpScale);
    private static readonly AcceptedFormat Tiff = new("tiff", ShrinkOnLoad.None);
    private static readonly AcceptedFormat Gif = new("gif", ShrinkOnLoad.None);

    /// <summary>HEIC and AVIF (libheif with libde265 and dav1d/libaom); reported as "avif" when AV1-coded.</summary>
    private static readonly AcceptedFormat Heif = new("heif", ShrinkOnLoad.None);

    private static readonly (string Prefix, AcceptedFormat Format)[] Accepted =
    [
        ("VipsForeignLoadJpeg", Jpeg),
        ("VipsForeignLoadPng", Png),
        ("VipsForeignLoadSpng", Png),
        ("VipsForeignLoadWebp", WebP),
        ("VipsForeignLoadTiff", Tiff),
        ("VipsForeignLoadNsgif", Gif),
        ("VipsForeignLoadGif", Gif),
        ("VipsForeignLoadHeif", Heif),
    ];

    /// <summary>ISO BMFF major brands of HEIF files (HEIC, AVIF and the generic image brands).</summary>
    private static readonly string[] HeifBrands = ["heic", "heix", "hevc", "hevx", "heim", "heis", "hevm", "hevs", "mif1", "msf1", "avif", "avis"];

    /// <summary>Names of recognised but refused formats, for the error message.</summary>
    private static readonly (string Prefix, string Name)[] Refused =
    [
        ("VipsForeignLoadJp2k", "JPEG 2000"),
        ("VipsForeignLoadJxl", "JPEG XL"),
        ("VipsForeignLoadSvg", "SVG"),
        ("VipsForeignLoadPdf", "PDF"),
        ("VipsForeignLoadMagick", "a format only ImageMagick reads (BMP, ICO, PSD, ...)"),
        ("VipsForeignLoadRad", "Radiance HDR"),
    ];

    /// <summary>Short names of the accepted formats, in the order above, without duplicates.</summary>
    public static IReadOnlyList<string> Names { get; } =
        [.. Accepted.Select(a => a.Format.Name).Distinct(StringComparer.Ordinal), "avif"];

    /// <summary>The accepted format for a loader type name, or null.</summary>
    public static AcceptedFormat? Find(string loader)
    {
        foreach (var (prefix, format) in Accepted)
        {
            if (loader.StartsWith(prefix, StringComparison.Ordinal))
            {
                return format;
            }
        }

        return null;
    }

    /// <summary>
    /// The accepted format whose signature the bytes start with, or null. Used only when libvips
    /// named no accepted loader, to tell a damaged file of an accepted format from a foreign one.
    /// </summary>
    public static AcceptedFormat? Sniff(ReadOnlySpan<byte> bytes)
    {
        if (bytes.StartsWith((ReadOnlySpan<byte>)[0xFF, 0xD8, 0xFF]))
        {
            return Jpeg;
        }

        if (bytes.StartsWith((ReadOnlySpan<byte>)[0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]))
        {
            return Png;
        }

        if (bytes.StartsWith("GIF87a"u8) || bytes.StartsWith("GIF89a"u8))
        {
            return Gif;
        }

        // Classic and BigTIFF, little- and big-endian.
        if (bytes.StartsWith("II*\0"u8) || bytes.StartsWith("MM\0*"u8) || bytes.StartsWith("II+\0"u8) || bytes.StartsWith("MM\0+"u8))
        {
            return Tiff;
        }

        if (bytes.Length >= 12 && bytes.StartsWith("RIFF"u8) && bytes[8..12].SequenceEqual("WEBP"u8))
        {
            return WebP;
        }

        if (bytes.Length >= 12 && bytes[4..8].SequenceEqual("ftyp"u8))
        {
            var brand = System.Text.Encoding.ASCII.GetString(bytes[8..12]);
            return HeifBrands.Contains(brand, StringComparer.Ordinal) ? Heif : null;
        }

        return null;
    }

    /// <summary>
    /// The canvas size a WebP file declares in its first chunk (VP8X: the canvas, up to 2^24 per
    /// side; VP8L and VP8: the image), or null when the bytes are too short or not a WebP. Read
    /// without libwebp, whose loader in libvips allocates the whole frame while reading the header.
    /// </summary>
    public static (int Width, int Height)? DeclaredWebPSize(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < 30 || !bytes.StartsWith("RIFF"u8) || !bytes[8..12].SequenceEqual("WEBP"u8))
        {
            return null;
        }

        var chunk = bytes[12..16];
        var data = bytes[20..];
        if (chunk.SequenceEqual("VP8X"u8))
        {
            return (1 + (data[4] | (data[5] << 8) | (data[6] << 16)), 1 + (data[7] | (data[8] << 8) | (data[9] << 16)));
        }

        if (chunk.SequenceEqual("VP8L"u8) && data[0] == 0x2F)
        {
            var bits = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(data[1..5]);
            return (1 + (int)(bits & 0x3FFF), 1 + (int)((bits >> 14) & 0x3FFF));
        }

        if (chunk.SequenceEqual("VP8 "u8) && data[3] == 0x9D && data[4] == 0x01 && data[5] == 0x2A)
        {
            return (System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(data[6..8]) & 0x3FFF,
                System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(data[8..10]) & 0x3FFF);
        }

        return null;
    }

    /// <summary>A readable name for a refused loader ("PDF"), or the loader's type name.</summary>
    public static string DescribeRefused(string loader)
    {
        foreach (var (prefix, name) in Refused)
        {
            if (loader.StartsWith(prefix, StringComparison.Ordinal))
            {
                return name;
            }
        }

        return loader;
    }
}
