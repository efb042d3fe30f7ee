using System.Runtime.InteropServices;

namespace ImageSearch.Imaging.Vips;

/// <summary>
/// P/Invoke declarations for the parts of libvips 8.14 (Debian package libvips42) and GLib that the
/// decoder uses. Libraries are loaded by their full sonames, so no -dev package is needed.
/// </summary>
/// <remarks>
/// Most vips_* operations are C varargs functions: required arguments, then name/value pairs of
/// optional arguments, then a NULL terminator. .NET cannot call varargs functions directly, so each
/// is declared here with the exact optional arguments we pass spelled out as fixed parameters and a
/// trailing <c>IntPtr.Zero</c>. On the SysV x86-64 and AAPCS64 (Linux) ABIs, integer and pointer
/// varargs travel exactly like fixed arguments, so this is sound for int, gboolean, enum and pointer
/// values. It is NOT sound for doubles (x86-64 passes variadic doubles in vector registers counted in
/// %al, which a fixed-signature call does not set): never add a double to a varargs tail; pass such
/// options through a loader option string (e.g. "[scale=0.5]") instead. Apple arm64 passes all
/// varargs on the stack, which is why only Linux is supported.
/// </remarks>
internal static partial class VipsNative
{
    private const string Vips = "libvips.so.42";
    private const string GObject = "libgobject-2.0.so.0";
    private const string GLib = "libglib-2.0.so.0";

    /// <summary>VipsBandFormat values (vips/image.h).</summary>
    internal const int FormatUChar = 0;

    /// <summary>VipsInterpretation values (vips/image.h).</summary>
    internal const int InterpretationBW = 1;
    internal const int InterpretationSrgb = 22;
    internal const int InterpretationRgb16 = 25;
    internal const int InterpretationGrey16 = 26;

    /// <summary>VIPS_SIZE_FORCE: resize each axis independently to exactly the requested size.</summary>
    internal const int SizeForce = 3;

    /// <summary>G_LOG_LEVEL_WARNING.</summary>
    internal const int GLogLevelWarning = 1 << 4;

    // ---- GLib / GObject ----

    [LibraryImport(GObject, EntryPoint = "g_object_unref")]
    internal static partial void GObjectUnref(IntPtr instance);

    [LibraryImport(GLib, EntryPoint = "g_free")]
    internal static partial void GFree(IntPtr memory);

    [LibraryImport(GLib, EntryPoint = "g_log_set_handler", StringMarshalling = StringMarshalling.Utf8)]
    internal static unsafe partial uint GLogSetHandler(string domain, int levels, delegate* unmanaged<IntPtr, int, IntPtr, IntPtr, void> handler, IntPtr userData);

    // ---- Process-wide libvips state ----

    [LibraryImport(Vips, EntryPoint = "vips_init", StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int Init(string argv0);

    /// <summary>libc setenv: libvips reads its environment through getenv, which .NET's own environment copy does not reach.</summary>
    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int SetEnv(string name, string value, int overwrite);

    [LibraryImport(Vips, EntryPoint = "vips_version_string")]
    internal static partial IntPtr VersionString();

    [LibraryImport(Vips, EntryPoint = "vips_cache_set_max")]
    internal static partial void CacheSetMax(int max);

    [LibraryImport(Vips, EntryPoint = "vips_concurrency_set")]
    internal static partial void ConcurrencySet(int concurrency);

    [LibraryImport(Vips, EntryPoint = "vips_block_untrusted_set")]
    internal static partial void BlockUntrustedSet(int state);

    /// <summary>The process-wide error text (static storage; do not free).</summary>
    [LibraryImport(Vips, EntryPoint = "vips_error_buffer")]
    internal static partial IntPtr ErrorBuffer();

    /// <summary>Copies (g_malloc; free with g_free) and clears the error text, under libvips' lock.</summary>
    [LibraryImport(Vips, EntryPoint = "vips_error_buffer_copy")]
    internal static partial IntPtr ErrorBufferCopy();

    [LibraryImport(Vips, EntryPoint = "vips_error_clear")]
    internal static partial void ErrorClear();

    // ---- Loading ----

    /// <summary>The GType name of the loader that recognises the bytes (static string), or NULL.</summary>
    [LibraryImport(Vips, EntryPoint = "vips_foreign_find_load_buffer")]
    internal static unsafe partial IntPtr ForeignFindLoadBuffer(byte* data, nuint length);

    /// <summary>
    /// Lazily opens an image over <paramref name="data"/> WITHOUT copying it: the memory must stay
    /// valid and unmoved until every image derived from the result has been unreferenced.
    /// </summary>
    [LibraryImport(Vips, EntryPoint = "vips_image_new_from_buffer", StringMarshalling = StringMarshalling.Utf8)]
    internal static unsafe partial VipsImageHandle ImageNewFromBuffer(byte* data, nuint length, string optionString, IntPtr terminator);

    // ---- Header fields ----

    [LibraryImport(Vips, EntryPoint = "vips_image_get_width")]
    internal static partial int ImageGetWidth(VipsImageHandle image);

    [LibraryImport(Vips, EntryPoint = "vips_image_get_height")]
    internal static partial int ImageGetHeight(VipsImageHandle image);

    [LibraryImport(Vips, EntryPoint = "vips_image_get_bands")]
    internal static partial int ImageGetBands(VipsImageHandle image);

    [LibraryImport(Vips, EntryPoint = "vips_image_get_format")]
    internal static partial int ImageGetFormat(VipsImageHandle image);

    [LibraryImport(Vips, EntryPoint = "vips_image_get_interpretation")]
    internal static partial int ImageGetInterpretation(VipsImageHandle image);

    /// <summary>EXIF orientation 1..8 (1 when absent or out of range).</summary>
    [LibraryImport(Vips, EntryPoint = "vips_image_get_orientation")]
    internal static partial int ImageGetOrientation(VipsImageHandle image);

    [LibraryImport(Vips, EntryPoint = "vips_image_hasalpha")]
    internal static partial int ImageHasAlpha(VipsImageHandle image);

    /// <summary>The GType of a metadata field, or 0 when the image has no such field.</summary>
    [LibraryImport(Vips, EntryPoint = "vips_image_get_typeof", StringMarshalling = StringMarshalling.Utf8)]
    internal static partial nuint ImageGetTypeof(VipsImageHandle image, string name);

    /// <summary>A string metadata field; <paramref name="value"/> points into the image (do not free).</summary>
    [LibraryImport(Vips, EntryPoint = "vips_image_get_string", StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int ImageGetString(VipsImageHandle image, string name, out IntPtr value);

    // ---- Operations (varargs: fixed optional arguments, then a NULL terminator) ----

    [LibraryImport(Vips, EntryPoint = "vips_extract_area")]
    internal static partial int ExtractArea(VipsImageHandle input, out VipsImageHandle output, int left, int top, int width, int height, IntPtr terminator);

    [LibraryImport(Vips, EntryPoint = "vips_extract_band", StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int ExtractBand(VipsImageHandle input, out VipsImageHandle output, int band, string nName, int n, IntPtr terminator);

    /// <summary>
    /// vips_thumbnail_image(in, &amp;out, width, "height", height, "size", size, "no_rotate", noRotate, NULL):
    /// colour to sRGB/B_W, premultiplied antialiased resize (libvips' vips_resize: box shrink, then
    /// lanczos3 reduce) and, unless <paramref name="noRotate"/>, EXIF auto-rotation after the resize.
    /// </summary>
    [LibraryImport(Vips, EntryPoint = "vips_thumbnail_image", StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int ThumbnailImage(VipsImageHandle input, out VipsImageHandle output, int width, string heightName, int height, string sizeName, int size, string noRotateName, int noRotate, IntPtr terminator);

    [LibraryImport(Vips, EntryPoint = "vips_colourspace_issupported")]
    internal static partial int ColourspaceIsSupported(VipsImageHandle image);

    [LibraryImport(Vips, EntryPoint = "vips_colourspace")]
    internal static partial int Colourspace(VipsImageHandle input, out VipsImageHandle output, int space, IntPtr terminator);

    [LibraryImport(Vips, EntryPoint = "vips_cast")]
    internal static partial int Cast(VipsImageHandle input, out VipsImageHandle output, int format, IntPtr terminator);

    /// <summary>vips_copy(in, &amp;out, "interpretation", value, NULL): relabels, pixels untouched.</summary>
    [LibraryImport(Vips, EntryPoint = "vips_copy", StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int CopyWithInterpretation(VipsImageHandle input, out VipsImageHandle output, string interpretationName, int interpretation, IntPtr terminator);

    /// <summary>vips_flatten(in, &amp;out, "background", VipsArrayDouble*, NULL).</summary>
    [LibraryImport(Vips, EntryPoint = "vips_flatten", StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int Flatten(VipsImageHandle input, out VipsImageHandle output, string backgroundName, IntPtr background, IntPtr terminator);

    /// <summary>A new VipsArrayDouble (copy of <paramref name="values"/>); release with <see cref="AreaUnref"/>.</summary>
    [LibraryImport(Vips, EntryPoint = "vips_array_double_new")]
    internal static unsafe partial IntPtr ArrayDoubleNew(double* values, int count);

    [LibraryImport(Vips, EntryPoint = "vips_area_unref")]
    internal static partial void AreaUnref(IntPtr area);

    /// <summary>vips_avg(in, &amp;out, NULL): computes every pixel; used to check that all of them decode.</summary>
    [LibraryImport(Vips, EntryPoint = "vips_avg")]
    internal static partial int Avg(VipsImageHandle input, out double average, IntPtr terminator);

    /// <summary>vips_linear1(in, &amp;out, a, b, "uchar", TRUE, NULL): a * in + b, truncated and clipped to 8 bits.</summary>
    [LibraryImport(Vips, EntryPoint = "vips_linear1", StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int Linear1(VipsImageHandle input, out VipsImageHandle output, double a, double b, string ucharName, int uchar, IntPtr terminator);

    /// <summary>vips_shrink(in, &amp;out, hshrink, vshrink, NULL): box-filter shrink by (integer) factors.</summary>
    [LibraryImport(Vips, EntryPoint = "vips_shrink")]
    internal static partial int Shrink(VipsImageHandle input, out VipsImageHandle output, double hshrink, double vshrink, IntPtr terminator);

    // ---- Output ----

    /// <summary>A region on <paramref name="image"/> (a GObject: g_object_unref it before the image).</summary>
    [LibraryImport(Vips, EntryPoint = "vips_region_new")]
    internal static partial IntPtr RegionNew(VipsImageHandle image);

    /// <summary>
    /// Computes an area of pixels on the calling thread (no thread pool) and returns a g_malloc'd
    /// copy (free with g_free), or NULL on error.
    /// </summary>
    [LibraryImport(Vips, EntryPoint = "vips_region_fetch")]
    internal static partial IntPtr RegionFetch(IntPtr region, int left, int top, int width, int height, out nuint length);

    /// <summary>Evaluates the pipeline into a g_malloc'd buffer (free with g_free), or NULL on error.</summary>
    [LibraryImport(Vips, EntryPoint = "vips_image_write_to_memory")]
    internal static partial IntPtr ImageWriteToMemory(VipsImageHandle image, out nuint size);

    /// <summary>vips_jpegsave_buffer(in, &amp;buf, &amp;len, "Q", q, "strip", s, "optimize_coding", o, NULL); free buf with g_free.</summary>
    [LibraryImport(Vips, EntryPoint = "vips_jpegsave_buffer", StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int JpegSaveBuffer(VipsImageHandle input, out IntPtr buffer, out nuint length, string qualityName, int quality, string stripName, int strip, string optimizeName, int optimize, IntPtr terminator);

    // ---- Encoding (ImageEncoder) and diagnostics ----

    /// <summary>A new 8-bit image holding a copy of <paramref name="data"/> (width * height * bands bytes).</summary>
    [LibraryImport(Vips, EntryPoint = "vips_image_new_from_memory_copy")]
    internal static unsafe partial VipsImageHandle ImageNewFromMemoryCopy(byte* data, nuint size, int width, int height, int bands, int format);

    [LibraryImport(Vips, EntryPoint = "vips_image_set_int", StringMarshalling = StringMarshalling.Utf8)]
    internal static partial void ImageSetInt(VipsImageHandle image, string name, int value);

    /// <summary>vips_&lt;format&gt;save_buffer(in, &amp;buf, &amp;len, name, value, NULL) for the savers that take one int option.</summary>
    [LibraryImport(Vips, EntryPoint = "vips_pngsave_buffer", StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int PngSaveBuffer(VipsImageHandle input, out IntPtr buffer, out nuint length, string name, int value, IntPtr terminator);

    [LibraryImport(Vips, EntryPoint = "vips_webpsave_buffer", StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int WebpSaveBuffer(VipsImageHandle input, out IntPtr buffer, out nuint length, string name, int value, IntPtr terminator);

    [LibraryImport(Vips, EntryPoint = "vips_gifsave_buffer", StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int GifSaveBuffer(VipsImageHandle input, out IntPtr buffer, out nuint length, string name, int value, IntPtr terminator);

    [LibraryImport(Vips, EntryPoint = "vips_tiffsave_buffer", StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int TiffSaveBuffer(VipsImageHandle input, out IntPtr buffer, out nuint length, string name, int value, IntPtr terminator);

    [LibraryImport(Vips, EntryPoint = "vips_heifsave_buffer", StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int HeifSaveBuffer(VipsImageHandle input, out IntPtr buffer, out nuint length, string name, int value, IntPtr terminator);

    /// <summary>
    /// Computes <paramref name="image"/> into a new memory image (a new reference), or NULL on error:
    /// where a pipeline reads its input more than once, the input is then decoded only once.
    /// </summary>
    [LibraryImport(Vips, EntryPoint = "vips_image_copy_memory")]
    internal static partial VipsImageHandle ImageCopyMemory(VipsImageHandle image);

    /// <summary>Bytes libvips currently holds for pixel buffers (vips_tracked_malloc), process-wide.</summary>
    [LibraryImport(Vips, EntryPoint = "vips_tracked_get_mem")]
    internal static partial ulong TrackedGetMem();
}
