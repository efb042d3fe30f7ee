using System.Buffers;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using ImageSearch.Core;

namespace ImageSearch.Imaging.Vips;

/// <summary>
/// One decode of one input: pins the bytes, identifies the format, reads and checks the header, and
/// builds libvips pipelines over it. Owns every VipsImage it creates; <see cref="Dispose"/> unrefs
/// them all and only then unpins the bytes, because libvips reads the caller's buffer in place.
/// Not thread-safe (one per call); libvips itself is, so sessions may run in parallel.
/// </summary>
internal sealed unsafe class DecodeSession : IDisposable
{
    /// <summary>
    /// Loader options for every load. fail_on=error makes truncated or unreadable pixel data an error
    /// when pixels are computed (libvips 8.14's default, none, returns grey or garbage instead), while
    /// what libjpeg only warns about ("extraneous bytes before marker", damaged entropy-coded data),
    /// which many real photos have, still decodes. (vips_thumbnail_buffer's own fail_on argument
    /// is not passed on to the loader in 8.14: truncated files "succeed" through it.) Sequential access streams the decode top to bottom, so a big
    /// image is never held in memory whole (nor spilled to a temporary file).
    /// </summary>
    private const string BaseOptions = "fail_on=error,access=sequential";

    private readonly List<VipsImageHandle> images = [];
    private readonly byte* data;
    private readonly nuint length;
    private MemoryHandle pin;
    private AcceptedFormat format = null!;
    private VipsImageHandle header = null!;
    private bool partial;
    private bool disposed;

    // Loaded images whose pixels are not read yet, by loader option ("" for full size), and whether
    // the header's own image was handed out (its pixels may be read once, like any other).
    private readonly Dictionary<string, VipsImageHandle> unread = [];
    private bool headerRead;

    // Whether the whole image was decoded once to check it (a box's render needs that once per session).
    private bool verified;

    private DecodeSession(ReadOnlyMemory<byte> bytes)
    {
        VipsRuntime.BeginDecode();
        pin = bytes.Pin();
        data = (byte*)pin.Pointer;
        length = (nuint)bytes.Length;
    }

    /// <summary>Header facts with EXIF orientation applied.</summary>
    public ImageInfo Info { get; private set; } = null!;

    /// <summary>EXIF orientation 1..8 as libvips read it.</summary>
    public int Orientation { get; private set; }

    public int StoredWidth { get; private set; }

    public int StoredHeight { get; private set; }

    private static string AcceptedList => "JPEG, PNG, WebP, TIFF, GIF, HEIF/AVIF";

    private string FormatLabel => format.Name.ToUpperInvariant();

    /// <summary>
    /// Checks size limits, identifies the format and reads the header; no pixels are decoded.
    /// </summary>
    /// <exception cref="InvalidImageException">Empty, too large, unsupported or unreadable input.</exception>
    public static DecodeSession Open(ReadOnlyMemory<byte> bytes, DecodeLimits limits)
    {
        ArgumentNullException.ThrowIfNull(limits);
        VipsRuntime.EnsureInitialized();
        if (bytes.IsEmpty)
        {
            throw new InvalidImageException(ImageErrorKind.Empty, "The input is empty (0 bytes).");
        }

        if (bytes.Length > limits.MaxBytes)
        {
            throw new InvalidImageException(ImageErrorKind.TooLarge,
                string.Create(CultureInfo.InvariantCulture, $"The input is {bytes.Length} bytes; the limit is {limits.MaxBytes}."));
        }

        var session = new DecodeSession(bytes);
        try
        {
            session.ReadHeader(bytes.Span, limits);
            var pixels = (long)session.StoredWidth * session.StoredHeight;
            if (pixels > limits.MaxPixels)
            {
                throw new InvalidImageException(ImageErrorKind.TooLarge, string.Create(CultureInfo.InvariantCulture,
                    $"The {session.FormatLabel} image is {session.Info.Width}x{session.Info.Height} ({pixels} pixels); the limit is {limits.MaxPixels} pixels."));
            }

            return session;
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Builds (lazily) the pipeline for <paramref name="region"/> of the oriented image resized to
    /// exactly <paramref name="width"/> x <paramref name="height"/>, upright, 8-bit sRGB, 3 bands.
    /// </summary>
    /// <param name="region">Box in the oriented image, already clamped to it.</param>
    /// <param name="width">Output width.</param>
    /// <param name="height">Output height.</param>
    public VipsImageHandle Render(BoundingBox region, int width, int height)
    {
        var stored = ExifOrientation.ToStored(region, Orientation, StoredWidth, StoredHeight);
        var swap = ExifOrientation.SwapsAxes(Orientation);
        partial = stored != new BoundingBox(0, 0, StoredWidth, StoredHeight);
        var plan = Plan(stored, swap ? height : width, swap ? width : height);
        var image = Take(plan.LoadOption);
        if (partial)
        {
            image = Crop(image, plan.Box);
        }

        // The box is cropped in the stored frame; thumbnail_image reads the orientation the crop
        // inherited, resizes to the (swapped) target and rotates only the small result upright.
        image = Own(VipsNative.ThumbnailImage(image, out var resized, width, "height", height,
            "size", VipsNative.SizeForce, "no_rotate", 0, IntPtr.Zero), resized, "resizing");
        image = ToSrgb8(image);

        if (image.Width != width || image.Height != height || image.Bands != 3)
        {
            throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture,
                $"libvips produced {image.Width}x{image.Height}x{image.Bands}, expected {width}x{height}x3."));
        }

        return image;
    }

    /// <summary>
    /// Decodes <paramref name="region"/> of the oriented image resized to exactly
    /// <paramref name="width"/> x <paramref name="height"/>, upright, packed 8-bit RGB: the model's
    /// input. libvips decodes (at reduced size where the format allows), crops and box-shrinks by
    /// whole factors to within 2-4x of the target, all on the calling thread; the final antialiased
    /// resize and the EXIF rotation of the small result are done by <see cref="Resampler"/>.
    /// </summary>
    public RgbImage RenderPixels(BoundingBox region, int width, int height) => RenderPixels(region, [(width, height)], 1)[0]!;

    /// <summary>
    /// <see cref="RenderPixels(BoundingBox, int, int)"/> at each of <paramref name="sizes"/>, each
    /// exactly as that call would give it, from as few decodes as that allows: sizes whose reduction
    /// (load size, crop, box shrink) is the same share one decode, and only the final resizes differ.
    /// The first <paramref name="required"/> sizes are always rendered; each later one only when it
    /// shares a decode with one of those (null otherwise).
    /// </summary>
    public RgbImage?[] RenderPixels(BoundingBox region, ReadOnlySpan<(int Width, int Height)> sizes, int required)
    {
        var stored = ExifOrientation.ToStored(region, Orientation, StoredWidth, StoredHeight);
        var swap = ExifOrientation.SwapsAxes(Orientation);
        partial = stored != new BoundingBox(0, 0, StoredWidth, StoredHeight);

        // Every plan first, while each loaded image is still unread: one load serves them all for their sizes.
        var targets = new (int Width, int Height)[sizes.Length];
        var plans = new Reduction[sizes.Length];
        for (var i = 0; i < sizes.Length; i++)
        {
            targets[i] = swap ? (sizes[i].Height, sizes[i].Width) : sizes[i];
            plans[i] = Plan(stored, targets[i].Width, targets[i].Height);
        }

        var decoded = new Dictionary<Reduction, (byte[] Pixels, int Width, int Height)>(sizes.Length);
        var result = new RgbImage?[sizes.Length];
        for (var i = 0; i < sizes.Length; i++)
        {
            if (!decoded.TryGetValue(plans[i], out var source))
            {
                if (i >= required)
                {
                    continue;
                }

                source = decoded[plans[i]] = Decode(plans[i]);
            }

            var (targetWidth, targetHeight) = targets[i];
            var resized = Resampler.Resize(source.Pixels, source.Width, source.Height, targetWidth, targetHeight, Kernel);
            var (upright, uprightWidth, uprightHeight) = Resampler.Orient(resized, targetWidth, targetHeight, Orientation);
            result[i] = new RgbImage(uprightWidth, uprightHeight, upright);
        }

        return result;
    }

    /// <summary>
    /// How a region is reduced before the final resize: the loader's option (null: full size), the
    /// region's box in the loaded image, and the whole-factor box shrink after the crop.
    /// </summary>
    private sealed record Reduction(string? LoadOption, BoundingBox Box, int HorizontalShrink, int VerticalShrink);

    /// <summary>The reduction <see cref="RenderPixels(BoundingBox, int, int)"/> makes of the stored-frame box for a (stored-frame) target.</summary>
    private Reduction Plan(BoundingBox stored, int targetWidth, int targetHeight)
    {
        var option = LoadOption(stored, targetWidth, targetHeight);
        var loaded = Peek(option);
        var box = partial ? ScaleBox(stored, StoredWidth, StoredHeight, loaded.Width, loaded.Height) : new BoundingBox(0, 0, loaded.Width, loaded.Height);

        // Formats without shrink-on-load (PNG, TIFF, GIF, HEIF) and big boxes: a box filter by whole
        // factors bounds what is fetched to less than 4x the target per axis.
        return new Reduction(option, box, Math.Max(1, box.Width / (2 * targetWidth)), Math.Max(1, box.Height / (2 * targetHeight)));
    }

    /// <summary>How many times this thread has decoded pixels for <see cref="RenderPixels(BoundingBox, ReadOnlySpan{ValueTuple{int, int}}, int)"/> (tests count decodes with it).</summary>
    [ThreadStatic]
    internal static int PixelDecodesOnThisThread;

    /// <summary>Decodes the pixels of a <see cref="Plan"/>: load, crop, box shrink, 8-bit sRGB, fetched on this thread.</summary>
    private (byte[] Pixels, int Width, int Height) Decode(Reduction plan)
    {
        PixelDecodesOnThisThread++;
        var image = Take(plan.LoadOption);
        if (partial)
        {
            image = Crop(image, plan.Box);
        }

        if (plan.HorizontalShrink > 1 || plan.VerticalShrink > 1)
        {
            image = Own(VipsNative.Shrink(image, out var shrunk, plan.HorizontalShrink, plan.VerticalShrink, IntPtr.Zero), shrunk, "shrinking");
        }

        var fetched = Fetch(ToSrgb8(image));
        VerifyWholeImageIfPartial();
        return fetched;
    }

    /// <summary>
    /// The filter of <see cref="RenderPixels(BoundingBox, int, int)"/>: the tent (antialiased bilinear). Measured on the
    /// development benchmark against libvips' lanczos3 thumbnail: the same retrieval quality
    /// (instance mAP 0.884 vs 0.878, category P@10 0.575 vs 0.584) at a fraction of the cost.
    /// </summary>
    internal const ResampleKernel Kernel = ResampleKernel.Triangle;

    /// <summary>Computes every pixel of <paramref name="image"/> (3-band uchar) on this thread and copies them out.</summary>
    private (byte[] Pixels, int Width, int Height) Fetch(VipsImageHandle image)
    {
        var (width, height) = (image.Width, image.Height);
        var region = VipsNative.RegionNew(image);
        if (region == IntPtr.Zero)
        {
            throw Failure("decoding pixels");
        }

        IntPtr memory;
        nuint size;
        try
        {
            memory = VipsNative.RegionFetch(region, 0, 0, width, height, out size);
        }
        finally
        {
            VipsNative.GObjectUnref(region);
        }

        if (memory == IntPtr.Zero)
        {
            throw Failure("decoding pixels");
        }

        try
        {
            var expected = (nuint)width * (nuint)height * 3;
            if (size != expected)
            {
                throw new InvalidOperationException($"libvips fetched {size} bytes, expected {expected}.");
            }

            var pixels = GC.AllocateUninitializedArray<byte>((int)size);
            new ReadOnlySpan<byte>((void*)memory, (int)size).CopyTo(pixels);
            return (pixels, width, height);
        }
        finally
        {
            VipsNative.GFree(memory);
        }
    }

    /// <summary>
    /// Crops <paramref name="box"/> out of <paramref name="image"/>: the stored-frame box scaled as
    /// shrink-on-load scaled the image (<see cref="ScaleBox"/>, by the actual ratio, since the loaded
    /// size is rounded).
    /// </summary>
    private VipsImageHandle Crop(VipsImageHandle image, BoundingBox box) =>
        Own(VipsNative.ExtractArea(image, out var cropped, box.X, box.Y, box.Width, box.Height, IntPtr.Zero), cropped, "cropping");

    /// <summary>
    /// <paramref name="box"/> of a <paramref name="fromWidth"/> x <paramref name="fromHeight"/> image,
    /// in the pixels of the same image at <paramref name="toWidth"/> x <paramref name="toHeight"/>:
    /// edges rounded, at least one pixel, inside the image.
    /// </summary>
    internal static BoundingBox ScaleBox(BoundingBox box, int fromWidth, int fromHeight, int toWidth, int toHeight)
    {
        var fx = (double)toWidth / fromWidth;
        var fy = (double)toHeight / fromHeight;
        var left = Math.Clamp((int)Math.Round(box.X * fx), 0, toWidth - 1);
        var top = Math.Clamp((int)Math.Round(box.Y * fy), 0, toHeight - 1);
        var right = Math.Clamp((int)Math.Round((box.X + box.Width) * fx), left + 1, toWidth);
        var bottom = Math.Clamp((int)Math.Round((box.Y + box.Height) * fy), top + 1, toHeight);
        return new BoundingBox(left, top, right - left, bottom - top);
    }

    /// <summary>Computes the pipeline and encodes it as a baseline JPEG without metadata.</summary>
    public byte[] ToJpeg(VipsImageHandle image, int quality)
    {
        // strip: the pixels are already upright, so a copied orientation tag would rotate them twice;
        // it also keeps GPS and other EXIF out of thumbnails served over HTTP.
        if (VipsNative.JpegSaveBuffer(image, out var buffer, out var size, "Q", quality, "strip", 1,
                "optimize_coding", 1, IntPtr.Zero) != 0)
        {
            VipsNative.GFree(buffer);
            throw Failure("decoding pixels");
        }

        try
        {
            VerifyWholeImageIfPartial();
            return new ReadOnlySpan<byte>((void*)buffer, checked((int)size)).ToArray();
        }
        finally
        {
            VipsNative.GFree(buffer);
        }
    }

    public void Dispose()
    {
        if (disposed)
        {
            return;
        }

        disposed = true;
        for (var i = images.Count - 1; i >= 0; i--)
        {
            images[i].Dispose();
        }

        images.Clear();
        pin.Dispose();
        VipsRuntime.EndDecode();
    }

    /// <summary>Identifies the format from the content and reads the header (lazily: no pixels).</summary>
    private void ReadHeader(ReadOnlySpan<byte> bytes, DecodeLimits limits)
    {
        _ = VipsRuntime.TakeThreadWarning(); // left by an earlier call on this thread
        var loaderName = VipsNative.ForeignFindLoadBuffer(data, length);
        var loader = loaderName == IntPtr.Zero ? null : Marshal.PtrToStringUTF8(loaderName);
        var accepted = loader is null ? null : ImageFormats.Find(loader);
        if (accepted is null)
        {
            var reason = VipsRuntime.TakeError();
            if (ImageFormats.Sniff(bytes) is { } damaged)
            {
                // Starts like an accepted format, yet its loader did not claim it (a truncated TIFF
                // fails libtiff's check and falls through to ImageMagick): a broken file, not a foreign one.
                format = damaged;
                throw new InvalidImageException(ImageErrorKind.Corrupt,
                    $"Corrupt or unreadable {FormatLabel} image (reading the header failed): {reason ?? "its header is not valid"}");
            }

            throw new InvalidImageException(ImageErrorKind.UnsupportedFormat, loader is null
                ? $"Not a recognised image format ({DescribeStart(bytes)}). Accepted: {AcceptedList}."
                : $"The input is {ImageFormats.DescribeRefused(loader)}, which is not accepted. Accepted: {AcceptedList}.");
        }

        format = accepted;

        // libvips' WebP loader allocates its frame buffer (width x height x 4 bytes) while reading
        // the header: a 60-byte file declaring 16383 x 16383 reserved 1 GB before the limit below
        // could refuse it. So the declared size of a WebP is checked here, before libvips sees it.
        if (format.Shrink == ShrinkOnLoad.WebpScale && ImageFormats.DeclaredWebPSize(bytes) is { } declared &&
            (long)declared.Width * declared.Height > limits.MaxPixels)
        {
            throw new InvalidImageException(ImageErrorKind.TooLarge, string.Create(CultureInfo.InvariantCulture,
                $"The {FormatLabel} image is {declared.Width}x{declared.Height} ({(long)declared.Width * declared.Height} pixels); the limit is {limits.MaxPixels} pixels."));
        }

        header = Load(null, "reading the header");
        StoredWidth = header.Width;
        StoredHeight = header.Height;
        Orientation = VipsNative.ImageGetOrientation(header);
        var swap = ExifOrientation.SwapsAxes(Orientation);
        Info = new ImageInfo(swap ? StoredHeight : StoredWidth, swap ? StoredWidth : StoredHeight, FormatName(), header.Bands);
    }

    /// <summary>
    /// The largest libjpeg DCT shrink (8, 4, 2) that still leaves the region at least
    /// <paramref name="margin"/> times the target size on both axes, so the final antialiased
    /// reduce only ever shrinks. 1 when none does.
    /// </summary>
    internal static int JpegShrinkFactor(int regionWidth, int regionHeight, int targetWidth, int targetHeight, int margin)
    {
        foreach (var factor in (ReadOnlySpan<int>)[8, 4, 2])
        {
            if (regionWidth / factor >= (long)margin * targetWidth && regionHeight / factor >= (long)margin * targetHeight)
            {
                return factor;
            }
        }

        return 1;
    }

    /// <summary>
    /// The loader option (null: full size) that opens the image at the smallest size from which the
    /// region can still be resized DOWN to the target: libjpeg DCT scaling or libwebp scaled decoding.
    /// Other formats load at full size.
    /// </summary>
    /// <remarks>
    /// Margins, measured against a full-size decode on 30 real photos of 1.4 to 16 MP (mean absolute
    /// difference of the 224/299 px result, 0..255): a whole JPEG loaded at just the target size
    /// differs by about 1 and decodes up to twice as fast as with a 2x margin (0.3-0.5). A box, though,
    /// is rounded to whole pixels of the reduced image, which misplaces its edges by up to half a
    /// reduced pixel: with no margin that reached a mean of 2 and a worst photo of 10, so boxes keep a
    /// 2x margin (0.5, worst 3.6; edges off by at most a quarter of an output pixel). WebP always
    /// keeps 2x: its scaled decode saves little time (the VP8 data is decoded in full either way) and
    /// this leaves the final filter to the same resampler as every other format.
    /// </remarks>
    private string? LoadOption(BoundingBox region, int targetWidth, int targetHeight)
    {
        switch (format.Shrink)
        {
            case ShrinkOnLoad.JpegShrink:
                var factor = JpegShrinkFactor(region.Width, region.Height, targetWidth, targetHeight, partial ? 2 : 1);
                return factor == 1 ? null : string.Create(CultureInfo.InvariantCulture, $"shrink={factor}");

            case ShrinkOnLoad.WebpScale:
                var scale = 2 * Math.Max((double)targetWidth / region.Width, (double)targetHeight / region.Height);
                return scale >= 1 ? null : string.Create(CultureInfo.InvariantCulture, $"scale={scale:R}");

            default:
                return null;
        }
    }

    /// <summary>
    /// The image as loaded with <paramref name="option"/> (null: full size), for its size: no pixels
    /// are decoded. The same handle is what the next <see cref="Take"/> of that option gets.
    /// </summary>
    private VipsImageHandle Peek(string? option)
    {
        var key = option ?? "";
        if (!unread.TryGetValue(key, out var image))
        {
            image = option is null && !headerRead ? header : Load(option, option is null ? "decoding pixels" : "decoding at reduced size");
            headerRead |= option is null;
            unread[key] = image;
        }

        return image;
    }

    /// <summary>
    /// An image loaded with <paramref name="option"/> whose pixels nothing has read yet: a decode is
    /// sequential, so each one that is fetched needs a load of its own.
    /// </summary>
    private VipsImageHandle Take(string? option)
    {
        var image = Peek(option);
        unread.Remove(option ?? "");
        return image;
    }

    /// <summary>
    /// After rendering a box, decodes the whole image once more (at the smallest size the format
    /// allows, pixels discarded). A sequential decode stops below the box, so a box inside the intact
    /// part of a truncated file would otherwise succeed: whether a file is corrupt must not depend on
    /// the box asked for. Costs one extra, reduced, decode per boxed call, none for whole images.
    /// </summary>
    private void VerifyWholeImageIfPartial()
    {
        if (!partial || verified)
        {
            return;
        }

        // libvips rounds the shrunk size down: a JPEG narrower (or shorter) than the factor would
        // load as 0 pixels wide, which libvips 8.14 does not refuse but aborts the process on
        // (a failed assertion, "bad dimensions"). So never shrink an axis below one pixel.
        var shrink = JpegShrinkFactor(StoredWidth, StoredHeight, 1, 1, 1);
        var image = format.Shrink == ShrinkOnLoad.JpegShrink && shrink > 1
            ? Load(string.Create(CultureInfo.InvariantCulture, $"shrink={shrink}"), "decoding pixels")
            : Load(null, "decoding pixels");
        if (VipsNative.Avg(image, out _, IntPtr.Zero) != 0)
        {
            throw Failure("decoding pixels");
        }

        verified = true;
    }

    private VipsImageHandle Load(string? extraOptions, string step)
    {
        var options = extraOptions is null ? $"[{BaseOptions}]" : $"[{BaseOptions},{extraOptions}]";
        return Own(VipsNative.ImageNewFromBuffer(data, length, options, IntPtr.Zero), step);
    }

    /// <summary>
    /// Converts whatever the resize produced (sRGB or B_W, 8 or 16 bit, CMYK, with or without alpha)
    /// to 3-band 8-bit sRGB: colourspace to sRGB (grey is replicated), cast to 8 bits, alpha
    /// flattened onto white.
    /// </summary>
    private VipsImageHandle ToSrgb8(VipsImageHandle image)
    {
        // Grey becomes sRGB by joining the band with itself three times, so the pipeline above is
        // read three times over. A sequential decode can be read only once (libvips: "out of order
        // read at line N": a valid grey 6000x4000 PNG failed as corrupt at most output sizes), so
        // grey is computed into memory first. It is the reduced image (within 4x the output per
        // axis, or a thumbnail), so this costs little.
        if (image.Bands <= 2)
        {
            image = Own(VipsNative.ImageCopyMemory(image), "decoding pixels");
        }

        // 16-bit RGB and grey (alpha included) to 8 bits first, dividing by 257 and rounding
        // (libvips' own 16-to-8 conversion shifts, i.e. truncates; the uchar output of linear truncates,
        // hence the +0.5).
        if (image.Interpretation is VipsNative.InterpretationRgb16 or VipsNative.InterpretationGrey16)
        {
            var eightBit = image.Interpretation == VipsNative.InterpretationRgb16 ? VipsNative.InterpretationSrgb : VipsNative.InterpretationBW;
            image = Own(VipsNative.Linear1(image, out var scaled, 1.0 / 257, 0.5, "uchar", 1, IntPtr.Zero), scaled, "converting to 8 bits");
            image = Own(VipsNative.CopyWithInterpretation(image, out var relabelled, "interpretation", eightBit, IntPtr.Zero), relabelled, "converting to 8 bits");
        }

        if (image.Interpretation != VipsNative.InterpretationSrgb && VipsNative.ColourspaceIsSupported(image) != 0)
        {
            image = Own(VipsNative.Colourspace(image, out var srgb, VipsNative.InterpretationSrgb, IntPtr.Zero), srgb, "converting to sRGB");
        }

        if (image.HasAlpha)
        {
            // flatten's max_alpha defaults to 65535 for RGB16/GREY16 and 255 otherwise, so the
            // background must be white on the same scale.
            var white = image.Interpretation is VipsNative.InterpretationRgb16 or VipsNative.InterpretationGrey16 ? 65535.0 : 255.0;
            var background = stackalloc double[] { white, white, white, white };
            var array = VipsNative.ArrayDoubleNew(background, Math.Max(1, image.Bands - 1));
            try
            {
                image = Own(VipsNative.Flatten(image, out var flat, "background", array, IntPtr.Zero), flat, "flattening alpha");
            }
            finally
            {
                VipsNative.AreaUnref(array);
            }
        }

        if (image.Format != VipsNative.FormatUChar)
        {
            image = Own(VipsNative.Cast(image, out var cast, VipsNative.FormatUChar, IntPtr.Zero), cast, "converting to 8 bits");
        }

        // Interpretations libvips cannot convert (e.g. multiband scientific TIFF): keep what looks
        // like colour, and replicate a single band as grey.
        if (image.Bands > 3)
        {
            image = Own(VipsNative.ExtractBand(image, out var first3, 0, "n", 3, IntPtr.Zero), first3, "selecting bands");
        }
        else if (image.Bands == 2)
        {
            image = Own(VipsNative.ExtractBand(image, out var first, 0, "n", 1, IntPtr.Zero), first, "selecting bands");
        }

        if (image.Bands == 1)
        {
            image = Own(VipsNative.CopyWithInterpretation(image, out var grey, "interpretation", VipsNative.InterpretationBW, IntPtr.Zero), grey, "converting to sRGB");
            image = Own(VipsNative.Colourspace(image, out var rgb, VipsNative.InterpretationSrgb, IntPtr.Zero), rgb, "converting to sRGB");
        }

        return image;
    }

    private VipsImageHandle Own(int result, VipsImageHandle output, string step)
    {
        images.Add(output);
        if (result != 0 || output.IsInvalid)
        {
            throw Failure(step);
        }

        return output;
    }

    private VipsImageHandle Own(VipsImageHandle output, string step) => Own(0, output, step);

    private InvalidImageException Failure(string step)
    {
        var reason = VipsRuntime.TakeError() ?? VipsRuntime.TakeThreadWarning() ?? "libvips gave no details";
        return new InvalidImageException(ImageErrorKind.Corrupt, $"Corrupt or unreadable {FormatLabel} image ({step} failed): {reason}");
    }

    private string FormatName()
    {
        // libheif reports the codec of the primary image: AVIF is HEIF with AV1.
        if (format.Name == "heif" && VipsNative.ImageGetTypeof(header, "heif-compression") != 0
            && VipsNative.ImageGetString(header, "heif-compression", out var compression) == 0
            && Marshal.PtrToStringUTF8(compression) == "av1")
        {
            return "avif";
        }

        return format.Name;
    }

    /// <summary>The first bytes, as text when they look like text (HTML, JSON, an error page), else hex.</summary>
    private static string DescribeStart(ReadOnlySpan<byte> bytes)
    {
        var head = bytes[..Math.Min(bytes.Length, 24)];
        var printable = true;
        foreach (var b in head)
        {
            printable &= b is >= 0x20 and < 0x7F or (byte)'\n' or (byte)'\r' or (byte)'\t';
        }

        if (printable)
        {
            var text = Encoding.ASCII.GetString(head).ReplaceLineEndings(" ").Trim();
            return $"{bytes.Length} bytes starting with text \"{text}\"";
        }

        return $"{bytes.Length} bytes starting with {Convert.ToHexString(head[..Math.Min(head.Length, 12)])}";
    }
}
