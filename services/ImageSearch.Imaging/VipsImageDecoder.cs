using System.Runtime.CompilerServices;
using ImageSearch.Core;
using ImageSearch.Imaging.Vips;

namespace ImageSearch.Imaging;

/// <summary>
/// <see cref="IImageDecoder"/> over the system libvips (8.14, Debian package libvips42) by P/Invoke.
/// Thread-safe and stateless: run as many calls in parallel as there are cores to spare; each call
/// decodes on one thread (libvips concurrency is set to 1 process-wide).
/// </summary>
/// <remarks>
/// <para>Formats are detected from the content, never the file name. Accepted: JPEG, PNG, WebP,
/// TIFF, GIF (first frame) and HEIF (HEIC and AVIF; primary image). Everything else libvips can read
/// (PDF, SVG, JPEG 2000, JPEG XL, ImageMagick formats such as BMP) is refused as
/// <see cref="ImageErrorKind.UnsupportedFormat"/> to keep untrusted bytes away from those loaders.</para>
/// <para>Errors: empty input is <see cref="ImageErrorKind.Empty"/>; more than
/// <see cref="DecodeLimits.MaxBytes"/> bytes or a header declaring more than
/// <see cref="DecodeLimits.MaxPixels"/> pixels is <see cref="ImageErrorKind.TooLarge"/>, decided
/// before any pixel is decoded; a file of an accepted format whose header or pixel data cannot be
/// read, truncated files included, is <see cref="ImageErrorKind.Corrupt"/>, also when a box lies in
/// its intact part. Damage that libjpeg only warns about (a bit flip inside the entropy-coded data,
/// "extraneous bytes before marker") still decodes, possibly with visible damage: many real photos
/// carry such warnings and are fine. <see cref="ReadInfo"/> reads the header only, so it does not
/// notice truncated pixel data. Messages name the format and the failing step, then libvips'
/// reason; that reason is best effort, as libvips keeps one error buffer for the whole process.</para>
/// <para>Speed: JPEG and WebP are decoded at reduced size when the output is small (DCT scaling,
/// libwebp scaled decoding; never below the output size), then resized with libvips' antialiased
/// box shrink by whole factors, then a managed tent filter (<see cref="Resampler"/>). Decoding streams top to bottom, so memory stays small even
/// for big images. Embedded ICC profiles of RGB images are not applied (pixels are taken as sRGB);
/// CMYK is converted to sRGB by libvips. Alpha is flattened onto white.</para>
/// </remarks>
public sealed class VipsImageDecoder : IImageDecoder
{
    /// <summary>Largest output side accepted by <see cref="Prepare"/>, <see cref="DecodeFit"/> and <see cref="Thumbnail"/>.</summary>
    public const int MaxOutputSide = 16384;

    /// <summary>JPEG quality of <see cref="Thumbnail"/>.</summary>
    public const int ThumbnailQuality = 82;

    /// <summary>Loads and initialises libvips (once per process).</summary>
    /// <exception cref="InvalidOperationException">libvips (8.13 or later) is not installed or fails to start.</exception>
    /// <exception cref="PlatformNotSupportedException">Not Linux.</exception>
    public VipsImageDecoder() => VipsRuntime.EnsureInitialized();

    /// <summary>The libvips version in use, e.g. "8.14.1".</summary>
    public static string LibVipsVersion => VipsRuntime.Version;

    /// <summary>Names reported in <see cref="ImageInfo.Format"/>: jpeg, png, webp, tiff, gif, heif, avif.</summary>
    public static IReadOnlyList<string> SupportedFormats => ImageFormats.Names;

    /// <inheritdoc />
    public ImageInfo ReadInfo(ReadOnlyMemory<byte> data, DecodeLimits? limits = null)
    {
        using var session = DecodeSession.Open(data, limits ?? DecodeLimits.Default);
        return session.Info;
    }

    /// <inheritdoc />
    public PreparedImage Prepare(ReadOnlyMemory<byte> data, int width, int height, BoundingBox? region = null, DecodeLimits? limits = null)
    {
        CheckSide(width);
        CheckSide(height);
        using var session = DecodeSession.Open(data, limits ?? DecodeLimits.Default);
        var info = session.Info;
        var clamped = region?.ClampTo(info.Width, info.Height);
        var pixels = session.RenderPixels(clamped ?? new BoundingBox(0, 0, info.Width, info.Height), width, height);
        return new PreparedImage(pixels, info, clamped);
    }

    /// <inheritdoc />
    /// <remarks>
    /// Both are exactly what <see cref="Prepare"/> and <see cref="DecodeFit"/> give. One decode serves
    /// both when they reduce the region the same way before their final resizes (the same DCT scale,
    /// crop and box shrink: 307 of the benchmark's 310 photos for 224x224 and 384), else each gets its own.
    /// </remarks>
    public (PreparedImage Prepared, RgbImage Fitted) PrepareAndFit(ReadOnlyMemory<byte> data, int width, int height, int maxSide,
        BoundingBox? region = null, DecodeLimits? limits = null)
    {
        var (prepared, fitted) = PrepareAndFit(data, width, height, maxSide, region, limits, required: 2);
        return (prepared, fitted!);
    }

    /// <inheritdoc />
    public (PreparedImage Prepared, RgbImage? Fitted) PrepareAndFitIfShared(ReadOnlyMemory<byte> data, int width, int height, int maxSide,
        BoundingBox? region = null, DecodeLimits? limits = null) =>
        PrepareAndFit(data, width, height, maxSide, region, limits, required: 1);

    private static (PreparedImage Prepared, RgbImage? Fitted) PrepareAndFit(ReadOnlyMemory<byte> data, int width, int height, int maxSide,
        BoundingBox? region, DecodeLimits? limits, int required)
    {
        CheckSide(width);
        CheckSide(height);
        CheckSide(maxSide);
        using var session = DecodeSession.Open(data, limits ?? DecodeLimits.Default);
        var info = session.Info;
        var clamped = region?.ClampTo(info.Width, info.Height);
        var box = clamped ?? new BoundingBox(0, 0, info.Width, info.Height);
        var views = session.RenderPixels(box, [(width, height), FitWithin(box.Width, box.Height, maxSide)], required);
        return (new PreparedImage(views[0]!, info, clamped), views[1]);
    }

    /// <inheritdoc />
    /// <remarks>
    /// The image is decoded once, at the smallest size at which every region still has at least
    /// the target's pixels (never enlarged), then each region is cut out and resized by
    /// <see cref="Resampler"/>.
    /// </remarks>
    public IReadOnlyList<RgbImage> PrepareRegions(ReadOnlyMemory<byte> data, int width, int height, IReadOnlyList<BoundingBox> regions, DecodeLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(regions);
        CheckSide(width);
        CheckSide(height);
        using var session = DecodeSession.Open(data, limits ?? DecodeLimits.Default);
        var info = session.Info;
        var clamped = regions.Select(r => r.ClampTo(info.Width, info.Height)).ToArray();
        if (clamped.Length == 0)
        {
            return [];
        }

        var scale = Math.Min(1.0, clamped.Max(r => Math.Max((double)width / r.Width, (double)height / r.Height)));
        var wholeWidth = Math.Clamp((int)Math.Ceiling(info.Width * scale), 1, info.Width);
        var wholeHeight = Math.Clamp((int)Math.Ceiling(info.Height * scale), 1, info.Height);
        var whole = session.RenderPixels(new BoundingBox(0, 0, info.Width, info.Height), wholeWidth, wholeHeight);
        var result = new RgbImage[clamped.Length];
        for (var i = 0; i < clamped.Length; i++)
        {
            var (left, top, cw, ch) = DecodeSession.ScaleBox(clamped[i], info.Width, info.Height, wholeWidth, wholeHeight);
            var crop = new byte[cw * ch * 3];
            for (var y = 0; y < ch; y++)
            {
                Array.Copy(whole.Pixels, (((top + y) * wholeWidth) + left) * 3, crop, y * cw * 3, cw * 3);
            }

            result[i] = new RgbImage(width, height, Resampler.Resize(crop, cw, ch, width, height, DecodeSession.Kernel));
        }

        return result;
    }

    /// <inheritdoc />
    public RgbImage DecodeFit(ReadOnlyMemory<byte> data, int maxSide, DecodeLimits? limits = null, BoundingBox? region = null)
    {
        CheckSide(maxSide);
        using var session = DecodeSession.Open(data, limits ?? DecodeLimits.Default);
        var info = session.Info;
        var box = region?.ClampTo(info.Width, info.Height) ?? new BoundingBox(0, 0, info.Width, info.Height);
        var (width, height) = FitWithin(box.Width, box.Height, maxSide);
        return session.RenderPixels(box, width, height);
    }

    /// <inheritdoc />
    /// <remarks>Quality <see cref="ThumbnailQuality"/>, no metadata, pixels already upright.</remarks>
    public byte[] Thumbnail(ReadOnlyMemory<byte> data, int maxSide, DecodeLimits? limits = null)
    {
        CheckSide(maxSide);
        using var session = DecodeSession.Open(data, limits ?? DecodeLimits.Default);
        return session.ToJpeg(RenderFit(session, maxSide), ThumbnailQuality);
    }

    /// <summary>The size whose longer side is at most <paramref name="maxSide"/>, aspect kept, never enlarged.</summary>
    private static (int Width, int Height) FitWithin(int width, int height, int maxSide)
    {
        var longer = Math.Max(width, height);
        if (longer <= maxSide)
        {
            return (width, height);
        }

        var scale = (double)maxSide / longer;
        return (Math.Clamp((int)Math.Round(width * scale), 1, maxSide), Math.Clamp((int)Math.Round(height * scale), 1, maxSide));
    }

    private static VipsImageHandle RenderFit(DecodeSession session, int maxSide)
    {
        var info = session.Info;
        var (width, height) = FitWithin(info.Width, info.Height, maxSide);
        return session.Render(new BoundingBox(0, 0, info.Width, info.Height), width, height);
    }

    private static void CheckSide(int value, [CallerArgumentExpression(nameof(value))] string? name = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(value, name);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(value, MaxOutputSide, name);
    }
}
