using System.Runtime.InteropServices;
using ImageSearch.Core;

namespace ImageSearch.Imaging.Tests;

/// <summary>
/// Test-only libvips calls: encoders for formats that have no fixture (TIFF, GIF, HEIC, AVIF, big
/// JPEG/WebP), and libvips' tracked-memory counters. Varargs are declared with int/pointer optional
/// arguments only, as in the decoder.
/// </summary>
internal static partial class VipsTestNative
{
    /// <summary>VipsForeignHeifCompression values.</summary>
    public const int HeifHevc = 1, HeifAv1 = 4;

    private const string Vips = "libvips.so.42";
    private const int InterpretationCmyk = 15;

    static VipsTestNative() => _ = new VipsImageDecoder(); // vips_init

    /// <summary>Bytes libvips currently holds for pixels (vips_tracked_malloc).</summary>
    public static long TrackedMemory => (long)vips_tracked_get_mem();

    /// <summary>The most bytes libvips has held for pixels at once in this process.</summary>
    public static long TrackedMemoryHighWater => (long)vips_tracked_get_mem_highwater();

    public static int TrackedAllocations => vips_tracked_get_allocs();

    /// <summary>
    /// Frees what libvips keeps for the calling thread between calls (its per-thread cache of
    /// region buffers, counted in <see cref="TrackedMemory"/>), so a before/after comparison on one
    /// thread sees only what the calls in between kept.
    /// </summary>
    public static void ReleaseThreadBuffers() => vips_thread_shutdown();

    public static byte[] Tiff(RgbImage image) => Save(image.Pixels, image.Width, image.Height, 3, (img, out buf, out len) => vips_tiffsave_buffer(img, out buf, out len, IntPtr.Zero));

    public static byte[] Gif(RgbImage image) => Save(image.Pixels, image.Width, image.Height, 3, (img, out buf, out len) => vips_gifsave_buffer(img, out buf, out len, IntPtr.Zero));

    /// <summary>An animated GIF whose frames are the given images (all the same size).</summary>
    public static byte[] AnimatedGif(params RgbImage[] frames)
    {
        var (width, height) = (frames[0].Width, frames[0].Height);
        Assert.All(frames, f => Assert.Equal((width, height), (f.Width, f.Height)));
        // libvips holds an animation as one tall image of stacked frames plus a page height.
        return Save([.. frames.SelectMany(f => f.Pixels)], width, height * frames.Length, 3, (img, out buf, out len) =>
        {
            vips_image_set_int(img, "page-height", height);
            return vips_gifsave_buffer(img, out buf, out len, IntPtr.Zero);
        });
    }

    public static byte[] Heif(RgbImage image, int compression) =>
        Save(image.Pixels, image.Width, image.Height, 3, (img, out buf, out len) => vips_heifsave_buffer(img, out buf, out len, "compression", compression, IntPtr.Zero));

    public static byte[] Jpeg(RgbImage image, int quality) =>
        Save(image.Pixels, image.Width, image.Height, 3, (img, out buf, out len) => vips_jpegsave_buffer(img, out buf, out len, "Q", quality, IntPtr.Zero));

    /// <summary>A one-channel (greyscale) JPEG of the given luma values.</summary>
    public static byte[] GreyJpeg(int width, int height, byte[] luma, int quality) =>
        Save(luma, width, height, 1, (img, out buf, out len) => vips_jpegsave_buffer(img, out buf, out len, "Q", quality, IntPtr.Zero));

    public static byte[] WebP(RgbImage image, int quality) =>
        Save(image.Pixels, image.Width, image.Height, 3, (img, out buf, out len) => vips_webpsave_buffer(img, out buf, out len, "Q", quality, IntPtr.Zero));

    /// <summary>A CMYK TIFF (photometric "separated") of the given 4-channel ink values.</summary>
    public static byte[] CmykTiff(int width, int height, byte[] cmyk) =>
        SaveCmyk(width, height, cmyk, (IntPtr img, out IntPtr buf, out nuint len) => vips_tiffsave_buffer(img, out buf, out len, IntPtr.Zero));

    /// <summary>A CMYK JPEG (libjpeg writes Adobe's inverted CMYK with an APP14 marker) of the given ink values.</summary>
    public static byte[] CmykJpeg(int width, int height, byte[] cmyk) =>
        SaveCmyk(width, height, cmyk, (IntPtr img, out IntPtr buf, out nuint len) => vips_jpegsave_buffer(img, out buf, out len, "Q", 90, IntPtr.Zero));

    private static byte[] SaveCmyk(int width, int height, byte[] cmyk, Saver saver)
    {
        return Save(cmyk, width, height, 4, (img, out buf, out len) =>
        {
            buf = IntPtr.Zero;
            len = 0;
            if (vips_copy(img, out var labelled, "interpretation", InterpretationCmyk, IntPtr.Zero) != 0)
            {
                return -1;
            }

            try
            {
                return saver(labelled, out buf, out len);
            }
            finally
            {
                g_object_unref(labelled);
            }
        });
    }

    private delegate int Saver(IntPtr image, out IntPtr buffer, out nuint length);

    private static unsafe byte[] Save(byte[] pixels, int width, int height, int bands, Saver save)
    {
        Assert.Equal(width * height * bands, pixels.Length);
        IntPtr vipsImage;
        fixed (byte* p = pixels)
        {
            vipsImage = vips_image_new_from_memory_copy(p, (nuint)pixels.Length, width, height, bands, 0);
        }

        Assert.NotEqual(IntPtr.Zero, vipsImage);
        try
        {
            Assert.True(save(vipsImage, out var buffer, out var length) == 0, Marshal.PtrToStringUTF8(vips_error_buffer()));
            try
            {
                return new ReadOnlySpan<byte>((void*)buffer, (int)length).ToArray();
            }
            finally
            {
                g_free(buffer);
            }
        }
        finally
        {
            g_object_unref(vipsImage);
        }
    }

#pragma warning disable SA1300, IDE1006 // C names, as in the libvips headers
    [LibraryImport(Vips)]
    private static partial void vips_thread_shutdown();

    [LibraryImport(Vips)]
    private static unsafe partial IntPtr vips_image_new_from_memory_copy(byte* data, nuint size, int width, int height, int bands, int format);

    [LibraryImport(Vips, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int vips_copy(IntPtr input, out IntPtr output, string name, int value, IntPtr terminator);

    [LibraryImport(Vips, StringMarshalling = StringMarshalling.Utf8)]
    private static partial void vips_image_set_int(IntPtr image, string name, int value);

    [LibraryImport(Vips)]
    private static partial int vips_tiffsave_buffer(IntPtr input, out IntPtr buffer, out nuint length, IntPtr terminator);

    [LibraryImport(Vips)]
    private static partial int vips_gifsave_buffer(IntPtr input, out IntPtr buffer, out nuint length, IntPtr terminator);

    [LibraryImport(Vips, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int vips_heifsave_buffer(IntPtr input, out IntPtr buffer, out nuint length, string name, int value, IntPtr terminator);

    [LibraryImport(Vips, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int vips_jpegsave_buffer(IntPtr input, out IntPtr buffer, out nuint length, string name, int value, IntPtr terminator);

    [LibraryImport(Vips, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int vips_webpsave_buffer(IntPtr input, out IntPtr buffer, out nuint length, string name, int value, IntPtr terminator);

    [LibraryImport(Vips)]
    private static partial IntPtr vips_error_buffer();

    [LibraryImport(Vips)]
    private static partial ulong vips_tracked_get_mem();

    [LibraryImport(Vips)]
    private static partial ulong vips_tracked_get_mem_highwater();

    [LibraryImport(Vips)]
    private static partial int vips_tracked_get_allocs();

    [LibraryImport("libglib-2.0.so.0")]
    private static partial void g_free(IntPtr memory);

    [LibraryImport("libgobject-2.0.so.0")]
    private static partial void g_object_unref(IntPtr instance);
#pragma warning restore SA1300, IDE1006
}
