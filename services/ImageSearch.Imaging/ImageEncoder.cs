using ImageSearch.Core;
using ImageSearch.Imaging.Vips;

namespace ImageSearch.Imaging;

/// <summary>
/// Encodes pixels into the formats the decoder accepts, through the same libvips. The service never
/// encodes user images (thumbnails aside); this is for tools that need well-formed files of every
/// format to start from, such as the decoder's mutation fuzzer (<c>bench fuzz</c>).
/// </summary>
public static class ImageEncoder
{
    /// <summary>VipsForeignHeifCompression: HEVC (HEIC) and AV1 (AVIF).</summary>
    private const int HeifHevc = 1, HeifAv1 = 4;

    /// <summary>Formats <see cref="Encode"/> writes: jpeg, png, webp, gif, tiff, heif, avif.</summary>
    public static IReadOnlyList<string> Formats { get; } = ["jpeg", "png", "webp", "gif", "tiff", "heif", "avif"];

    /// <summary>
    /// <paramref name="frames"/> (all the same size) as <paramref name="format"/>: several frames make
    /// an animated GIF or WebP, a multi-page TIFF; the other formats take one frame.
    /// </summary>
    /// <exception cref="ArgumentException">An unknown format, frames of different sizes, or several frames for a single-image format.</exception>
    /// <exception cref="InvalidOperationException">libvips failed to encode (e.g. no HEIF encoder installed).</exception>
    public static unsafe byte[] Encode(string format, params RgbImage[] frames)
    {
        ArgumentNullException.ThrowIfNull(frames);
        ArgumentOutOfRangeException.ThrowIfZero(frames.Length, nameof(frames));
        var (width, height) = (frames[0].Width, frames[0].Height);
        if (frames.Any(f => f.Width != width || f.Height != height || f.Pixels.Length != width * height * 3))
        {
            throw new ArgumentException("Every frame must be RGB of the same size.", nameof(frames));
        }

        if (frames.Length > 1 && format is not ("gif" or "webp" or "tiff"))
        {
            throw new ArgumentException($"{format} holds one image here; only gif, webp and tiff take several frames.", nameof(frames));
        }

        VipsRuntime.EnsureInitialized();
        var pixels = frames.Length == 1 ? frames[0].Pixels : [.. frames.SelectMany(f => f.Pixels)];
        VipsImageHandle image;
        fixed (byte* p = pixels)
        {
            image = VipsNative.ImageNewFromMemoryCopy(p, (nuint)pixels.Length, width, height * frames.Length, 3, VipsNative.FormatUChar);
        }

        using (image)
        {
            if (image.IsInvalid)
            {
                throw new InvalidOperationException($"libvips could not wrap the pixels: {VipsRuntime.TakeError()}");
            }

            if (frames.Length > 1)
            {
                // libvips holds an animation or a page stack as one tall image plus its page height.
                VipsNative.ImageSetInt(image, "page-height", height);
            }

            IntPtr buffer;
            nuint length;
            var status = format switch
            {
                "jpeg" => VipsNative.JpegSaveBuffer(image, out buffer, out length, "Q", 90, "strip", 1, "optimize_coding", 0, IntPtr.Zero),
                "png" => VipsNative.PngSaveBuffer(image, out buffer, out length, "compression", 6, IntPtr.Zero),
                "webp" => VipsNative.WebpSaveBuffer(image, out buffer, out length, "Q", 85, IntPtr.Zero),
                "gif" => VipsNative.GifSaveBuffer(image, out buffer, out length, "effort", 7, IntPtr.Zero),
                "tiff" => VipsNative.TiffSaveBuffer(image, out buffer, out length, "tile", 0, IntPtr.Zero),
                "heif" => VipsNative.HeifSaveBuffer(image, out buffer, out length, "compression", HeifHevc, IntPtr.Zero),
                "avif" => VipsNative.HeifSaveBuffer(image, out buffer, out length, "compression", HeifAv1, IntPtr.Zero),
                _ => throw new ArgumentException($"Unknown format '{format}'; one of {string.Join(", ", Formats)}.", nameof(format)),
            };
            try
            {
                if (status != 0 || buffer == IntPtr.Zero)
                {
                    throw new InvalidOperationException($"libvips could not encode {format}: {VipsRuntime.TakeError() ?? "no reason given"}");
                }

                return new ReadOnlySpan<byte>((void*)buffer, checked((int)length)).ToArray();
            }
            finally
            {
                VipsNative.GFree(buffer);
            }
        }
    }

    /// <summary>
    /// Bytes libvips holds for pixel buffers right now, process-wide: back to its resting value
    /// after every decode when nothing leaks (diagnostics for the fuzzer and the tests).
    /// </summary>
    public static long LibVipsTrackedBytes
    {
        get
        {
            VipsRuntime.EnsureInitialized();
            return (long)VipsNative.TrackedGetMem();
        }
    }
}
