using System.Numerics;
using System.Numerics.Tensors;

namespace ImageSearch.Embedding;

/// <summary>
/// Eigendecomposition of a dense real symmetric matrix: Householder reduction to tridiagonal form,
/// then the implicit QL algorithm with Wilkinson-type shifts (the EISPACK tred2/tql2 pair, as in
/// JAMA's public-domain EigenvalueDecomposition), in double precision.
/// </summary>
/// <remarks>
/// Chosen over cyclic Jacobi because it costs about 9 n^3 flops in total where Jacobi needs about
/// 4 n^3 per sweep and 6 to 10 sweeps: for the 1792-d MobileNet features that is about 5 s on one
/// core instead of minutes. The working matrix is stored transposed (eigenvector j is row j) so every inner loop
/// walks contiguous memory and vectorises.
/// </remarks>
internal static class SymmetricEigen
{
    /// <summary>
    /// Decomposes the symmetric <paramref name="n"/> x <paramref name="n"/> row-major matrix
    /// <paramref name="matrix"/>, which is overwritten. Only symmetry is assumed, not definiteness.
    /// </summary>
    /// <returns>
    /// Eigenvalues in descending order, and the matching orthonormal eigenvectors as the rows of an
    /// n x n row-major array (the input array, reused).
    /// </returns>
    public static (double[] Values, double[] Vectors) Decompose(double[] matrix, int n)
    {
        ArgumentNullException.ThrowIfNull(matrix);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(n);
        if (matrix.Length != n * n)
        {
            throw new ArgumentException($"Expected {n}x{n} = {n * n} values, got {matrix.Length}.", nameof(matrix));
        }

        var d = new double[n];
        var e = new double[n];
        Tridiagonalise(matrix, n, d, e);
        DiagonaliseTridiagonal(matrix, n, d, e);
        return SortDescending(matrix, n, d);
    }

    /// <summary>Householder reduction (tred2). On return w holds the transposed accumulated transform.</summary>
    private static void Tridiagonalise(double[] w, int n, double[] d, double[] e)
    {
        // In JAMA terms V[a][b] is w[b * n + a] here; the matrix is symmetric so the input needs no transpose.
        for (var j = 0; j < n; j++)
        {
            d[j] = w[(j * n) + n - 1];
        }

        for (var i = n - 1; i > 0; i--)
        {
            var scale = 0.0;
            var h = 0.0;
            for (var k = 0; k < i; k++)
            {
                scale += Math.Abs(d[k]);
            }

            if (scale == 0.0)
            {
                e[i] = d[i - 1];
                for (var j = 0; j < i; j++)
                {
                    d[j] = w[(j * n) + i - 1];
                    w[(j * n) + i] = 0.0;
                    w[(i * n) + j] = 0.0;
                }
            }
            else
            {
                // Householder vector, scaled to avoid under/overflow.
                for (var k = 0; k < i; k++)
                {
                    d[k] /= scale;
                    h += d[k] * d[k];
                }

                var f = d[i - 1];
                var g = Math.Sqrt(h);
                if (f > 0)
                {
                    g = -g;
                }

                e[i] = scale * g;
                h -= f * g;
                d[i - 1] = f - g;
                Array.Clear(e, 0, i);

                // Similarity transformation of the remaining columns.
                var dSpan = d.AsSpan(0, i);
                var eSpan = e.AsSpan(0, i);
                for (var j = 0; j < i; j++)
                {
                    f = d[j];
                    w[(i * n) + j] = f;
                    var column = w.AsSpan((j * n) + j + 1, i - j - 1);
                    g = e[j] + (w[(j * n) + j] * f) + TensorPrimitives.Dot<double>(column, dSpan[(j + 1)..]);
                    TensorPrimitives.MultiplyAdd(column, f, eSpan[(j + 1)..], eSpan[(j + 1)..]);
                    e[j] = g;
                }

                f = 0.0;
                for (var j = 0; j < i; j++)
                {
                    e[j] /= h;
                    f += e[j] * d[j];
                }

                var hh = f / (h + h);
                TensorPrimitives.MultiplyAdd(dSpan, -hh, eSpan, eSpan);
                for (var j = 0; j < i; j++)
                {
                    f = d[j];
                    g = e[j];
                    var column = w.AsSpan((j * n) + j, i - j);
                    TensorPrimitives.MultiplyAdd(eSpan[j..], -f, column, column);
                    TensorPrimitives.MultiplyAdd(dSpan[j..], -g, column, column);
                    d[j] = w[(j * n) + i - 1];
                    w[(j * n) + i] = 0.0;
                }
            }

            d[i] = h;
        }

        // Accumulate the transformations.
        for (var i = 0; i < n - 1; i++)
        {
            w[(i * n) + n - 1] = w[(i * n) + i];
            w[(i * n) + i] = 1.0;
            var h = d[i + 1];
            var next = w.AsSpan((i + 1) * n, i + 1);
            if (h != 0.0)
            {
                TensorPrimitives.Divide(next, h, d.AsSpan(0, i + 1));
                var dSpan = d.AsSpan(0, i + 1);
                for (var j = 0; j <= i; j++)
                {
                    var column = w.AsSpan(j * n, i + 1);
                    var g = TensorPrimitives.Dot<double>(next, column);
                    TensorPrimitives.MultiplyAdd(dSpan, -g, column, column);
                }
            }

            next.Clear();
        }

        for (var j = 0; j < n; j++)
        {
            d[j] = w[(j * n) + n - 1];
            w[(j * n) + n - 1] = 0.0;
        }

        w[(n * n) - 1] = 1.0;
        e[0] = 0.0;
    }

    /// <summary>Implicit QL iterations on the tridiagonal matrix (tql2), rotating the rows of w.</summary>
    private static void DiagonaliseTridiagonal(double[] w, int n, double[] d, double[] e)
    {
        for (var i = 1; i < n; i++)
        {
            e[i - 1] = e[i];
        }

        e[n - 1] = 0.0;
        var f = 0.0;
        var tst1 = 0.0;
        const double Eps = 2.220446049250313e-16; // 2^-52
        for (var l = 0; l < n; l++)
        {
            tst1 = Math.Max(tst1, Math.Abs(d[l]) + Math.Abs(e[l]));
            var m = l;
            while (m < n && Math.Abs(e[m]) > Eps * tst1)
            {
                m++;
            }

            if (m > l)
            {
                var iterations = 0;
                do
                {
                    // Convergence is normally reached in 2-3 iterations; 60 means the input was not finite.
                    if (++iterations > 60)
                    {
                        throw new ArithmeticException("Eigendecomposition did not converge (non-finite input?).");
                    }

                    var g = d[l];
                    var p = (d[l + 1] - g) / (2.0 * e[l]);
                    var r = Hypot(p, 1.0);
                    if (p < 0)
                    {
                        r = -r;
                    }

                    d[l] = e[l] / (p + r);
                    d[l + 1] = e[l] * (p + r);
                    var dl1 = d[l + 1];
                    var h = g - d[l];
                    for (var i = l + 2; i < n; i++)
                    {
                        d[i] -= h;
                    }

                    f += h;

                    p = d[m];
                    var c = 1.0;
                    var c2 = c;
                    var c3 = c;
                    var el1 = e[l + 1];
                    var s = 0.0;
                    var s2 = 0.0;
                    for (var i = m - 1; i >= l; i--)
                    {
                        c3 = c2;
                        c2 = c;
                        s2 = s;
                        g = c * e[i];
                        h = c * p;
                        r = Hypot(p, e[i]);
                        e[i + 1] = s * r;
                        s = e[i] / r;
                        c = p / r;
                        p = (c * d[i]) - (s * g);
                        d[i + 1] = h + (s * ((c * g) + (s * d[i])));
                        Rotate(w.AsSpan(i * n, n), w.AsSpan((i + 1) * n, n), c, s);
                    }

                    p = -s * s2 * c3 * el1 * e[l] / dl1;
                    e[l] = s * p;
                    d[l] = c * p;
                }
                while (Math.Abs(e[l]) > Eps * tst1);
            }

            d[l] += f;
            e[l] = 0.0;
        }
    }

    /// <summary>x' = c x - s y, y' = s x + c y, elementwise.</summary>
    private static void Rotate(Span<double> x, Span<double> y, double c, double s)
    {
        var k = 0;
        if (Vector.IsHardwareAccelerated && x.Length >= Vector<double>.Count)
        {
            var vc = new Vector<double>(c);
            var vs = new Vector<double>(s);
            for (; k <= x.Length - Vector<double>.Count; k += Vector<double>.Count)
            {
                var vx = new Vector<double>(x[k..]);
                var vy = new Vector<double>(y[k..]);
                ((vs * vx) + (vc * vy)).CopyTo(y[k..]);
                ((vc * vx) - (vs * vy)).CopyTo(x[k..]);
            }
        }

        for (; k < x.Length; k++)
        {
            var h = y[k];
            y[k] = (s * x[k]) + (c * h);
            x[k] = (c * x[k]) - (s * h);
        }
    }

    private static double Hypot(double a, double b)
    {
        a = Math.Abs(a);
        b = Math.Abs(b);
        if (a < b)
        {
            (a, b) = (b, a);
        }

        if (a == 0.0)
        {
            return 0.0;
        }

        var ratio = b / a;
        return a * Math.Sqrt(1.0 + (ratio * ratio));
    }

    private static (double[] Values, double[] Vectors) SortDescending(double[] w, int n, double[] d)
    {
        var order = new int[n];
        for (var i = 0; i < n; i++)
        {
            order[i] = i;
        }

        // Stable with respect to the index so equal eigenvalues keep a deterministic order.
        Array.Sort(order, (a, b) => d[b] != d[a] ? d[b].CompareTo(d[a]) : a.CompareTo(b));
        var values = new double[n];
        var vectors = new double[n * n];
        for (var i = 0; i < n; i++)
        {
            values[i] = d[order[i]];
            w.AsSpan(order[i] * n, n).CopyTo(vectors.AsSpan(i * n, n));
        }

        Array.Copy(vectors, w, vectors.Length);
        return (values, w);
    }
}
