using ImageSearch.Core;

namespace ImageSearch.Imaging.Vips;

/// <summary>
/// EXIF orientation (tag 0x0112) arithmetic: maps rectangles from the displayed (oriented) frame,
/// in which callers give boxes, to the stored frame, in which the decoder crops before resizing.
/// Cropping and resizing in the stored frame and rotating only the small result keeps the whole
/// pipeline sequential (no full-size rotated copy of the image).
/// </summary>
internal static class ExifOrientation
{
    /// <summary>Orientations 5..8 store the image transposed: displayed width = stored height.</summary>
    public static bool SwapsAxes(int orientation) => orientation is >= 5 and <= 8;

    /// <summary>
    /// The stored-frame rectangle holding the displayed-frame rectangle <paramref name="box"/>.
    /// Displayed pixel (x, y) comes from stored pixel:
    /// 1 (x, y); 2 (sw-1-x, y); 3 (sw-1-x, sh-1-y); 4 (x, sh-1-y);
    /// 5 (y, x); 6 (y, sh-1-x); 7 (sw-1-y, sh-1-x); 8 (sw-1-y, x).
    /// </summary>
    /// <param name="box">Rectangle in the displayed frame, already inside the image.</param>
    /// <param name="orientation">EXIF orientation 1..8; anything else is treated as 1.</param>
    /// <param name="storedWidth">Width of the image as stored (before orientation).</param>
    /// <param name="storedHeight">Height of the image as stored.</param>
    public static BoundingBox ToStored(BoundingBox box, int orientation, int storedWidth, int storedHeight)
    {
        var (x, y, w, h) = (box.X, box.Y, box.Width, box.Height);
        var (sw, sh) = (storedWidth, storedHeight);
        return orientation switch
        {
            2 => new BoundingBox(sw - x - w, y, w, h),
            3 => new BoundingBox(sw - x - w, sh - y - h, w, h),
            4 => new BoundingBox(x, sh - y - h, w, h),
            5 => new BoundingBox(y, x, h, w),
            6 => new BoundingBox(y, sh - x - w, h, w),
            7 => new BoundingBox(sw - y - h, sh - x - w, h, w),
            8 => new BoundingBox(sw - y - h, x, h, w),
            _ => box,
        };
    }
}
