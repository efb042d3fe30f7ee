using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ImageSearch.Imaging;

/// <summary>The filter of <see cref="Resampler"/>.</summary>
public enum ResampleKernel
{
    /// <summary>Tent (antialiased bilinear): support 1, widened by the scale when shrinking.</summary>
    Triangle,

    /// <summary>Catmull-Rom cubic (a = -0.5): support 2.</summary>
    Bicubic,

    /// <summary>Lanczos, 3 lobes: support 3 (libvips' default reduce).</summary>
    Lanczos3,
}

/// <summary>
/// Separable, antialiased resampling of packed 8-bit RGB, and EXIF-orientation transforms, in
/// managed code: the model's input is tiny (224 or 299 px), and libvips' per-operation cost (a few
/// milliseconds of pipeline set-up and Orc compilation per call on small images) was larger than the
/// whole decode. Pure functions, thread-safe.
/// </summary>
/// <remarks>
/// When shrinking, the kernel is stretched by the scale (every input pixel contributes: no
/// aliasing), as in Pillow's and libvips' reduce; when enlarging it is used at unit width. Weights
/// are normalised per output pixel, so flat areas stay exactly flat. The vertical pass runs first,
/// vectorised over whole rows, so the scalar horizontal pass only touches output rows.
/// </remarks>
public static unsafe class Resampler
{
    /// <summary>Resizes <paramref name="source"/> (packed RGB, <paramref name="width"/> x <paramref name="height"/>) to exactly the target size.</summary>
    /// <returns>Packed RGB pixels, <paramref name="targetWidth"/> x <paramref name="targetHeight"/>.</returns>
    public static byte[] Resize(ReadOnlySpan<byte> source, int width, int height, int targetWidth, int targetHeight, ResampleKernel kernel = ResampleKernel.Triangle)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(targetWidth);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(targetHeight);
        var rowLength = checked(width * 3);
        if (source.Length != checked(rowLength * height))
        {
            throw new ArgumentException($"Expected {rowLength * height} bytes for {width}x{height} RGB, got {source.Length}.", nameof(source));
        }

        var output = GC.AllocateUninitializedArray<byte>(checked(targetWidth * targetHeight * 3));
        if (width == targetWidth && height == targetHeight)
        {
            source.CopyTo(output);
            return output;
        }

        var vertical = Weights.For(height, targetHeight, kernel);
        var horizontal = Weights.For(width, targetWidth, kernel);
        var rows = ArrayPool<float>.Shared.Rent(checked(targetHeight * rowLength));
        try
        {
            fixed (byte* src = source)
            fixed (float* rowsBase = rows)
            fixed (byte* dst = output)
            {
                VerticalPass(src, rowLength, vertical, targetHeight, rowsBase);
                HorizontalPass(rowsBase, rowLength, horizontal, targetWidth, targetHeight, dst);
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(rows);
        }

        return output;
    }

    /// <summary>
    /// Turns pixels stored with EXIF orientation <paramref name="orientation"/> upright. Orientations
    /// 5..8 swap the axes: the result is <paramref name="height"/> x <paramref name="width"/>.
    /// </summary>
    /// <returns>Upright packed RGB pixels and their size.</returns>
    public static (byte[] Pixels, int Width, int Height) Orient(byte[] stored, int width, int height, int orientation)
    {
        ArgumentNullException.ThrowIfNull(stored);
        if (orientation is < 2 or > 8)
        {
            return (stored, width, height);
        }

        var swap = orientation >= 5;
        var (ow, oh) = swap ? (height, width) : (width, height);
        var output = GC.AllocateUninitializedArray<byte>(stored.Length);
        for (var y = 0; y < oh; y++)
        {
            for (var x = 0; x < ow; x++)
            {
                // Displayed (x, y) comes from stored (sx, sy); see ExifOrientation.ToStored.
                var (sx, sy) = orientation switch
                {
                    2 => (width - 1 - x, y),
                    3 => (width - 1 - x, height - 1 - y),
                    4 => (x, height - 1 - y),
                    5 => (y, x),
                    6 => (y, height - 1 - x),
                    7 => (width - 1 - y, height - 1 - x),
                    _ => (width - 1 - y, x),
                };
                var from = ((sy * width) + sx) * 3;
                var to = ((y * ow) + x) * 3;
                output[to] = stored[from];
                output[to + 1] = stored[from + 1];
                output[to + 2] = stored[from + 2];
            }
        }

        return (output, ow, oh);
    }

    private static byte ToByte(float v) => v <= 0 ? (byte)0 : v >= 255 ? (byte)255 : (byte)(v + 0.5f);

    /// <summary>Each output row: the weighted sum of whole input rows, widened to float (vectorised).</summary>
    private static void VerticalPass(byte* source, int rowLength, Weights weights, int outRows, float* rows)
    {
        var lanes = Vector256.IsHardwareAccelerated ? Vector256<float>.Count : 0;
        for (var y = 0; y < outRows; y++)
        {
            var acc = rows + ((long)y * rowLength);
            var taps = weights.Taps(y);
            var first = source + ((long)weights.Start[y] * rowLength);
            var i = 0;
            if (lanes > 0)
            {
                for (; i <= rowLength - lanes; i += lanes)
                {
                    var sum = Vector256<float>.Zero;
                    var p = first + i;
                    for (var k = 0; k < taps.Length; k++, p += rowLength)
                    {
                        sum += Load8(p) * Vector256.Create(taps[k]);
                    }

                    sum.Store(acc + i);
                }
            }

            for (; i < rowLength; i++)
            {
                float sum = 0;
                var p = first + i;
                for (var k = 0; k < taps.Length; k++, p += rowLength)
                {
                    sum += taps[k] * *p;
                }

                acc[i] = sum;
            }
        }
    }

    /// <summary>8 bytes widened to 8 floats.</summary>
    private static Vector256<float> Load8(byte* p)
    {
        if (Avx2.IsSupported)
        {
            return Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(p));
        }

        var words = Vector128.WidenLower(Vector128.CreateScalarUnsafe(Unsafe.ReadUnaligned<ulong>(p)).AsByte());
        return Vector256.ConvertToSingle(Vector256.Create(Vector128.WidenLower(words), Vector128.WidenUpper(words)).AsInt32());
    }

    /// <summary>Each output pixel of each (already vertically resampled) row: a weighted sum of its row's pixels.</summary>
    private static void HorizontalPass(float* rows, int rowLength, Weights weights, int outWidth, int outRows, byte* output)
    {
        fixed (float* allWeights = weights.All)
        fixed (int* starts = weights.Start)
        fixed (int* counts = weights.Count)
        {
            for (var y = 0; y < outRows; y++)
            {
                var row = rows + ((long)y * rowLength);
                var o = output + ((long)y * outWidth * 3);
                for (var x = 0; x < outWidth; x++, o += 3)
                {
                    var w = allWeights + ((long)x * weights.Stride);
                    var p = row + (starts[x] * 3);
                    var n = counts[x];
                    float r = 0, g = 0, b = 0;
                    for (var k = 0; k < n; k++, p += 3)
                    {
                        r += w[k] * p[0];
                        g += w[k] * p[1];
                        b += w[k] * p[2];
                    }

                    o[0] = ToByte(r);
                    o[1] = ToByte(g);
                    o[2] = ToByte(b);
                }
            }
        }
    }

    /// <summary>Per output pixel: the first input pixel and the normalised weights of its taps.</summary>
    private sealed class Weights
    {
        private Weights(int[] start, int[] count, float[] all, int stride)
        {
            Start = start;
            Count = count;
            All = all;
            Stride = stride;
        }

        public int[] Start { get; }

        public int[] Count { get; }

        public float[] All { get; }

        public int Stride { get; }

        public ReadOnlySpan<float> Taps(int i) => All.AsSpan(i * Stride, Count[i]);

        public static Weights For(int inSize, int outSize, ResampleKernel kernel)
        {
            var scale = (double)inSize / outSize;
            var stretch = Math.Max(scale, 1.0);
            var support = Support(kernel) * stretch;
            var stride = (int)Math.Ceiling(support) * 2 + 1;
            var start = new int[outSize];
            var count = new int[outSize];
            var all = new float[outSize * stride];
            for (var o = 0; o < outSize; o++)
            {
                // Pixel centres: output o maps to input coordinate (o + 0.5) * scale - 0.5.
                var centre = ((o + 0.5) * scale) - 0.5;
                var lo = Math.Max(0, (int)Math.Ceiling(centre - support));
                var hi = Math.Min(inSize - 1, (int)Math.Floor(centre + support));
                if (hi < lo)
                {
                    lo = hi = Math.Clamp((int)Math.Round(centre), 0, inSize - 1);
                }

                hi = Math.Min(hi, lo + stride - 1);
                double sum = 0;
                for (var i = lo; i <= hi; i++)
                {
                    sum += Filter(kernel, (i - centre) / stretch);
                }

                if (Math.Abs(sum) < 1e-12)
                {
                    // Degenerate (cannot happen for these kernels, but never divide by zero): nearest.
                    var nearest = Math.Clamp((int)Math.Round(centre), lo, hi);
                    start[o] = nearest;
                    count[o] = 1;
                    all[o * stride] = 1;
                    continue;
                }

                start[o] = lo;
                count[o] = hi - lo + 1;
                for (var i = lo; i <= hi; i++)
                {
                    all[(o * stride) + i - lo] = (float)(Filter(kernel, (i - centre) / stretch) / sum);
                }
            }

            return new Weights(start, count, all, stride);
        }

        private static double Support(ResampleKernel kernel) => kernel switch
        {
            ResampleKernel.Triangle => 1,
            ResampleKernel.Bicubic => 2,
            _ => 3,
        };

        private static double Filter(ResampleKernel kernel, double x)
        {
            x = Math.Abs(x);
            switch (kernel)
            {
                case ResampleKernel.Triangle:
                    return x < 1 ? 1 - x : 0;
                case ResampleKernel.Bicubic:
                    const double a = -0.5;
                    return x < 1 ? (((a + 2) * x) - (a + 3)) * x * x + 1
                        : x < 2 ? (((((a * x) - (5 * a)) * x) + (8 * a)) * x) - (4 * a)
                        : 0;
                default:
                    if (x < 1e-9)
                    {
                        return 1;
                    }

                    if (x >= 3)
                    {
                        return 0;
                    }

                    var px = Math.PI * x;
                    return 3 * Math.Sin(px) * Math.Sin(px / 3) / (px * px);
            }
        }
    }
}
