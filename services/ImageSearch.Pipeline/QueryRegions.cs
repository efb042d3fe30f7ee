using ImageSearch.Core;

namespace ImageSearch.Pipeline;

/// <summary>
/// The views searched for a query without a box in region mode: the whole image, then square
/// windows sliding over it at a few sizes, so that a photo which appears as part of a larger scene
/// is matched by the window that frames it. Pure function of the image size.
/// </summary>
public static class QueryRegions
{
    /// <summary>Window sides as fractions of the image's shorter side.</summary>
    public static IReadOnlyList<double> DefaultScales { get; } = [0.6, 0.4];

    /// <summary>Fraction of a window shared with its neighbour.</summary>
    public const double DefaultOverlap = 1.0 / 3;

    /// <summary>
    /// The whole image first, then for each scale a grid of square windows spaced evenly from edge
    /// to edge with at least <paramref name="overlap"/> between neighbours. Windows smaller than 32
    /// pixels are skipped.
    /// </summary>
    public static IReadOnlyList<BoundingBox> For(int width, int height, IReadOnlyList<double>? scales = null, double overlap = DefaultOverlap)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        ArgumentOutOfRangeException.ThrowIfLessThan(overlap, 0.0);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(overlap, 1.0);
        var result = new List<BoundingBox> { new(0, 0, width, height) };
        foreach (var scale in scales ?? DefaultScales)
        {
            var side = (int)Math.Round(scale * Math.Min(width, height));
            if (side < 32 || scale is <= 0 or >= 1)
            {
                continue;
            }

            var stride = side * (1 - overlap);
            var xs = Positions(width, side, stride);
            var ys = Positions(height, side, stride);
            foreach (var y in ys)
            {
                foreach (var x in xs)
                {
                    result.Add(new BoundingBox(x, y, side, side));
                }
            }
        }

        return result;
    }

    private static int[] Positions(int length, int side, double stride)
    {
        var count = (int)Math.Ceiling((length - side) / stride - 1e-9) + 1;
        if (count <= 1)
        {
            return [Math.Max(0, (length - side) / 2)];
        }

        var step = (double)(length - side) / (count - 1);
        return Enumerable.Range(0, count).Select(i => (int)Math.Round(i * step)).ToArray();
    }
}
