namespace ImageSearch.Core;

/// <summary>Limits applied before and during decoding; checked on the header, before pixels are allocated.</summary>
public sealed record DecodeLimits(long MaxBytes = 64L * 1024 * 1024, long MaxPixels = 100_000_000)
{
    public static DecodeLimits Default { get; } = new();
}

/// <summary>What the header of an image says, after EXIF orientation is taken into account.</summary>
public sealed record ImageInfo(int Width, int Height, string Format, int Bands);

/// <summary>Packed 8-bit RGB pixels, row-major, no padding (length = Width * Height * 3).</summary>
public sealed record RgbImage(int Width, int Height, byte[] Pixels);

/// <summary>
/// A decoded view of an image prepared for a model: the (optionally box-cropped) image resized to
/// <see cref="RgbImage.Width"/> x <see cref="RgbImage.Height"/>, plus the original's size.
/// </summary>
public sealed record PreparedImage(RgbImage Pixels, ImageInfo Original, BoundingBox? Region);

/// <summary>Decodes untrusted image bytes. Implementations are thread-safe.</summary>
public interface IImageDecoder
{
    /// <summary>Reads only the header (format, oriented size). Throws <see cref="InvalidImageException"/>.</summary>
    ImageInfo ReadInfo(ReadOnlyMemory<byte> data, DecodeLimits? limits = null);

    /// <summary>
    /// Decodes with EXIF orientation applied, crops to <paramref name="region"/> (original-image
    /// pixels, clamped to the image) and resizes the result to exactly
    /// <paramref name="width"/> x <paramref name="height"/> (aspect ratio not kept, as the models expect).
    /// Throws <see cref="InvalidImageException"/> for bad input.
    /// </summary>
    PreparedImage Prepare(ReadOnlyMemory<byte> data, int width, int height, BoundingBox? region = null, DecodeLimits? limits = null);

    /// <summary>
    /// Decodes once and returns each of <paramref name="regions"/> (original-image pixels, clamped
    /// to the image) resized to exactly <paramref name="width"/> x <paramref name="height"/>, in
    /// order: many views of one query for the price of one decode. Throws
    /// <see cref="InvalidImageException"/> for bad input.
    /// </summary>
    IReadOnlyList<RgbImage> PrepareRegions(ReadOnlyMemory<byte> data, int width, int height, IReadOnlyList<BoundingBox> regions, DecodeLimits? limits = null);

    /// <summary>
    /// Decodes with orientation applied and returns the whole image, or its part inside
    /// <paramref name="region"/> (original-image pixels, clamped to the image), shrunk so its longer
    /// side is at most <paramref name="maxSide"/> (never enlarged), as RGB pixels.
    /// </summary>
    RgbImage DecodeFit(ReadOnlyMemory<byte> data, int maxSide, DecodeLimits? limits = null, BoundingBox? region = null);

    /// <summary>
    /// <see cref="Prepare"/> and <see cref="DecodeFit"/> of the same region at once, each exactly as
    /// that call gives it, decoding once where the two allow it: the model's input and the view local
    /// features are extracted from. Throws <see cref="InvalidImageException"/> for bad input.
    /// </summary>
    (PreparedImage Prepared, RgbImage Fitted) PrepareAndFit(ReadOnlyMemory<byte> data, int width, int height, int maxSide, BoundingBox? region = null, DecodeLimits? limits = null);

    /// <summary>
    /// <see cref="PrepareAndFit"/> where one decode serves both; where the fitted view would need a
    /// decode of its own, it is null and only the prepared image is made, so a caller waiting for the
    /// prepared image (a query on its way to the model) can have the other made elsewhere
    /// (<see cref="DecodeFit"/>) instead of first.
    /// </summary>
    (PreparedImage Prepared, RgbImage? Fitted) PrepareAndFitIfShared(ReadOnlyMemory<byte> data, int width, int height, int maxSide, BoundingBox? region = null, DecodeLimits? limits = null);

    /// <summary>A JPEG thumbnail whose longer side is at most <paramref name="maxSide"/>.</summary>
    byte[] Thumbnail(ReadOnlyMemory<byte> data, int maxSide, DecodeLimits? limits = null);
}
