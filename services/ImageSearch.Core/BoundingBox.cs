using System.Globalization;

namespace ImageSearch.Core;

/// <summary>A rectangle in the pixel coordinates of the (EXIF-oriented) original image.</summary>
public readonly record struct BoundingBox(int X, int Y, int Width, int Height)
{
    /// <summary>Parses <c>x,y,w,h</c> (integers; whitespace allowed). Throws <see cref="FormatException"/> with a reason.</summary>
    public static BoundingBox Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        if (parts.Length != 4)
        {
            throw new FormatException($"Box '{text}' must be 'x,y,w,h' (four integers).");
        }

        var v = new int[4];
        for (var i = 0; i < 4; i++)
        {
            // Accept "12.0" as produced by some tools, but not fractional pixels.
            if (!double.TryParse(parts[i], NumberStyles.Float, CultureInfo.InvariantCulture, out var d) || double.IsNaN(d) || d != Math.Floor(d) || Math.Abs(d) > int.MaxValue)
            {
                throw new FormatException($"Box '{text}': '{parts[i]}' is not an integer.");
            }

            v[i] = (int)d;
        }

        if (v[0] < 0 || v[1] < 0)
        {
            throw new FormatException($"Box '{text}': x and y must be >= 0.");
        }

        if (v[2] <= 0 || v[3] <= 0)
        {
            throw new FormatException($"Box '{text}': width and height must be > 0.");
        }

        return new BoundingBox(v[0], v[1], v[2], v[3]);
    }

    public static bool TryParse(string? text, out BoundingBox box)
    {
        box = default;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }

        try
        {
            box = Parse(text);
            return true;
        }
        catch (FormatException)
        {
            return false;
        }
    }

    /// <summary>
    /// The part of this box inside an image of the given size, or throws <see cref="InvalidImageException"/>
    /// when the box lies entirely outside it.
    /// </summary>
    public BoundingBox ClampTo(int imageWidth, int imageHeight)
    {
        var x0 = Math.Max(0, X);
        var y0 = Math.Max(0, Y);
        var x1 = (int)Math.Min(imageWidth, (long)X + Width);
        var y1 = (int)Math.Min(imageHeight, (long)Y + Height);
        if (x1 <= x0 || y1 <= y0)
        {
            throw new InvalidImageException(ImageErrorKind.InvalidBox,
                $"Box {this} lies outside the {imageWidth}x{imageHeight} image.");
        }

        return new BoundingBox(x0, y0, x1 - x0, y1 - y0);
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{X},{Y},{Width},{Height}");
}
