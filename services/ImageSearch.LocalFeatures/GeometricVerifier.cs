using System.Buffers;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using ImageSearch.Core;
using Microsoft.Extensions.Options;

namespace ImageSearch.LocalFeatures;

/// <summary>
/// Matches descriptors with Lowe's ratio test, then finds the similarity transform (scale,
/// rotation, translation) that the most matches agree on and returns that count. Every SIFT match
/// carries a full similarity by itself (the two frames' positions, scales and orientations), so each
/// match is tried as a hypothesis: exhaustive and deterministic, no random sampling, O(matches²).
/// A match is an inlier of a hypothesis when it maps within <see cref="LocalFeatureOptions.InlierTolerance"/>
/// of the candidate's longer side, and its scale ratio and orientation change agree with the hypothesis.
/// The nearest-two search of the ratio test runs natively (sift_shim.c, AVX-512 VNNI) where the CPU
/// can, else as a managed loop; both give the same matches (exact integer distances, same ties).
/// </summary>
public sealed class GeometricVerifier(IOptions<LocalFeatureOptions> options) : IGeometricVerifier
{
    private const double MaxLogScaleDifference = 0.7; // a factor of 2 either way
    private const double MaxAngleDifference = Math.PI / 6;

    private readonly LocalFeatureOptions _options = options.Value;
    private readonly int _kernel = options.Value.ReferenceMatch ? ManagedMatchKernel : BestMatchKernel;

    /// <inheritdoc />
    public int CountInliers(LocalFeatureSet query, LocalFeatureSet candidate)
    {
        ArgumentNullException.ThrowIfNull(query);
        ArgumentNullException.ThrowIfNull(candidate);
        var matches = Match(query, candidate, _options.Ratio, _kernel);
        if (matches.Count < 2)
        {
            return matches.Count;
        }

        var tolerance = _options.InlierTolerance * Math.Max(candidate.Width, candidate.Height);
        return BestSimilarity(query.Frames, candidate.Frames, matches, tolerance);
    }

    /// <summary>Match kernel: the plain loop over <see cref="ScalarSquaredDistance"/>, the reference.</summary>
    internal const int ScalarMatch = 0;

    /// <summary>Match kernel: the same loop with the AVX2 <see cref="SquaredDistance"/>.</summary>
    internal const int Avx2Match = 1;

    /// <summary>Match kernel: the native AVX-512 VNNI search (sift_shim.c, is_sift_nearest2).</summary>
    internal const int Avx512VnniMatch = 2;

    /// <summary>The fastest managed match kernel this CPU runs (<see cref="LocalFeatureOptions.ReferenceMatch"/>).</summary>
    internal static int ManagedMatchKernel => Avx2.IsSupported ? Avx2Match : ScalarMatch;

    /// <summary>The fastest match kernel this CPU runs; a kernel above it falls back to it.</summary>
    internal static int BestMatchKernel { get; } = FindBestMatchKernel();

    /// <summary>Whether matching runs the native AVX-512 VNNI kernel on this CPU (else the managed loop).</summary>
    public static bool NativeMatchSupported => BestMatchKernel == Avx512VnniMatch;

    /// <summary>
    /// Pairs (query feature, candidate feature) passing the ratio test; a candidate feature keeps
    /// only its closest query feature, so a repeated pattern cannot vote many times.
    /// </summary>
    internal static List<(int Query, int Candidate)> Match(LocalFeatureSet query, LocalFeatureSet candidate, double ratio) =>
        Match(query, candidate, ratio, BestMatchKernel);

    /// <summary>
    /// <see cref="Match(LocalFeatureSet, LocalFeatureSet, double)"/> with a given kernel (tests compare
    /// them). Every kernel finds the same nearest two for each query feature (the same integer
    /// distances, the lowest candidate index among equal nearest ones), so the matches are the same.
    /// </summary>
    internal static List<(int Query, int Candidate)> Match(LocalFeatureSet query, LocalFeatureSet candidate, double ratio, int kernel)
    {
        var n = query.Count;
        if (candidate.Count < 2 || n == 0)
        {
            return [];
        }

        var pool = ArrayPool<int>.Shared;
        int[] best = pool.Rent(n), bestIndex = pool.Rent(n), second = pool.Rent(n);
        try
        {
            Nearest(query, candidate, kernel, best, bestIndex, second);
            var owner = new int[candidate.Count];
            var ownerDistance = new int[candidate.Count];
            Array.Fill(owner, -1);

            var limit = ratio * ratio;
            for (var i = 0; i < n; i++)
            {
                var j = bestIndex[i];
                if (best[i] < limit * second[i] && (owner[j] < 0 || best[i] < ownerDistance[j]))
                {
                    owner[j] = i;
                    ownerDistance[j] = best[i];
                }
            }

            var matches = new List<(int, int)>();
            for (var j = 0; j < owner.Length; j++)
            {
                if (owner[j] >= 0)
                {
                    matches.Add((owner[j], j));
                }
            }

            return matches;
        }
        finally
        {
            pool.Return(best);
            pool.Return(bestIndex);
            pool.Return(second);
        }
    }

    /// <summary>
    /// For each query descriptor, the squared distance to the nearest candidate descriptor (the first
    /// one, by index, among equal distances), its index, and the second smallest distance (equal to
    /// the nearest when two candidates tie). The candidate has at least two features; a kernel this
    /// CPU lacks falls back to <see cref="BestMatchKernel"/>.
    /// </summary>
    internal static void Nearest(LocalFeatureSet query, LocalFeatureSet candidate, int kernel, Span<int> best, Span<int> bestIndex, Span<int> second)
    {
        // The native kernel writes Count values to each span and reads Count descriptors from each set.
        if (candidate.Count < 2 || best.Length < query.Count || bestIndex.Length < query.Count || second.Length < query.Count
            || query.Descriptors.Length < query.Count * LocalFeatureSet.DescriptorLength
            || candidate.Descriptors.Length < candidate.Count * LocalFeatureSet.DescriptorLength)
        {
            throw new ArgumentException("Nearest needs two candidate features or more, all descriptor bytes and room for every query feature.");
        }

        if (Math.Min(kernel, BestMatchKernel) == Avx512VnniMatch && query.Count > 0)
        {
            unsafe
            {
                fixed (byte* queryBytes = query.Descriptors)
                fixed (byte* candidateBytes = candidate.Descriptors)
                fixed (int* b = best)
                fixed (int* bi = bestIndex)
                fixed (int* s = second)
                {
                    var status = SiftNative.Nearest2(queryBytes, query.Count, candidateBytes, candidate.Count, b, bi, s);
                    if (status == SiftNative.OutOfMemory)
                    {
                        throw new InsufficientMemoryException($"Matching {query.Count} x {candidate.Count} features could not allocate its scratch.");
                    }

                    if (status != 0)
                    {
                        throw new InvalidOperationException($"is_sift_nearest2 refused {query.Count} x {candidate.Count} features (status {status}).");
                    }
                }
            }

            return;
        }

        if (kernel == ScalarMatch)
        {
            NearestManaged<ScalarDistance>(query, candidate, best, bestIndex, second);
        }
        else
        {
            NearestManaged<Avx2Distance>(query, candidate, best, bestIndex, second);
        }
    }

    /// <summary>The managed loop, one distance per pair (specialised per distance: no test in the loop).</summary>
    private static void NearestManaged<TDistance>(LocalFeatureSet query, LocalFeatureSet candidate, Span<int> best, Span<int> bestIndex, Span<int> second)
        where TDistance : struct, IDescriptorDistance
    {
        var q = query.Descriptors.AsSpan();
        var c = candidate.Descriptors.AsSpan();
        const int L = LocalFeatureSet.DescriptorLength;
        for (var i = 0; i < query.Count; i++)
        {
            var a = q.Slice(i * L, L);
            int nearest = int.MaxValue, runnerUp = int.MaxValue, nearestIndex = -1;
            for (var j = 0; j < candidate.Count; j++)
            {
                var d = TDistance.Of(a, c.Slice(j * L, L));
                if (d < nearest)
                {
                    runnerUp = nearest;
                    nearest = d;
                    nearestIndex = j;
                }
                else if (d < runnerUp)
                {
                    runnerUp = d;
                }
            }

            best[i] = nearest;
            bestIndex[i] = nearestIndex;
            second[i] = runnerUp;
        }
    }

    private static int FindBestMatchKernel()
    {
        try
        {
            if (SiftNative.MatchSupported() == 1)
            {
                return Avx512VnniMatch;
            }
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            // No shim (or an older one): the managed kernels match the same way, more slowly.
        }

        return ManagedMatchKernel;
    }

    /// <summary>A squared descriptor distance for <see cref="NearestManaged{TDistance}"/>.</summary>
    private interface IDescriptorDistance
    {
        static abstract int Of(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b);
    }

    private readonly struct ScalarDistance : IDescriptorDistance
    {
        public static int Of(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b) => ScalarSquaredDistance(a, b);
    }

    private readonly struct Avx2Distance : IDescriptorDistance
    {
        public static int Of(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b) => SquaredDistance(a, b);
    }

    /// <summary>Squared Euclidean distance of two 128-byte descriptors.</summary>
    internal static int SquaredDistance(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        if (Avx2.IsSupported)
        {
            var sum = Vector256<int>.Zero;
            for (var k = 0; k < LocalFeatureSet.DescriptorLength; k += 32)
            {
                var x = Vector256.Create(a.Slice(k, 32));
                var y = Vector256.Create(b.Slice(k, 32));
                var diff = Avx2.Or(Avx2.SubtractSaturate(x, y), Avx2.SubtractSaturate(y, x));
                var (lo, hi) = Vector256.Widen(diff);
                sum = Avx2.Add(sum, Avx2.MultiplyAddAdjacent(lo.AsInt16(), lo.AsInt16()));
                sum = Avx2.Add(sum, Avx2.MultiplyAddAdjacent(hi.AsInt16(), hi.AsInt16()));
            }

            return Vector256.Sum(sum);
        }

        return ScalarSquaredDistance(a, b);
    }

    /// <summary>Squared Euclidean distance of two 128-byte descriptors, the plain sum.</summary>
    internal static int ScalarSquaredDistance(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        var total = 0;
        for (var k = 0; k < LocalFeatureSet.DescriptorLength; k++)
        {
            var d = a[k] - b[k];
            total += d * d;
        }

        return total;
    }

    /// <summary>The most matches agreeing with one similarity, each match tried as the hypothesis.</summary>
    internal static int BestSimilarity(float[] queryFrames, float[] candidateFrames, List<(int Query, int Candidate)> matches, double tolerance)
    {
        var n = matches.Count;
        var qx = new double[n];
        var qy = new double[n];
        var cx = new double[n];
        var cy = new double[n];
        var logScale = new double[n];
        var rotation = new double[n];
        for (var i = 0; i < n; i++)
        {
            var (a, b) = matches[i];
            qx[i] = queryFrames[4 * a];
            qy[i] = queryFrames[(4 * a) + 1];
            cx[i] = candidateFrames[4 * b];
            cy[i] = candidateFrames[(4 * b) + 1];
            logScale[i] = Math.Log(Math.Max(candidateFrames[(4 * b) + 2], 1e-3) / Math.Max(queryFrames[(4 * a) + 2], 1e-3));
            rotation[i] = candidateFrames[(4 * b) + 3] - queryFrames[(4 * a) + 3];
        }

        var tolerance2 = tolerance * tolerance;
        var best = 1;
        for (var h = 0; h < n; h++)
        {
            // Candidate point = s R (query point) + t, from match h alone.
            var s = Math.Exp(logScale[h]);
            var (sin, cos) = Math.SinCos(rotation[h]);
            var a = s * cos;
            var b = s * sin;
            var tx = cx[h] - ((a * qx[h]) - (b * qy[h]));
            var ty = cy[h] - ((b * qx[h]) + (a * qy[h]));
            var inliers = 0;
            for (var i = 0; i < n; i++)
            {
                var ex = (a * qx[i]) - (b * qy[i]) + tx - cx[i];
                var ey = (b * qx[i]) + (a * qy[i]) + ty - cy[i];
                if ((ex * ex) + (ey * ey) <= tolerance2
                    && Math.Abs(logScale[i] - logScale[h]) <= MaxLogScaleDifference
                    && Math.Abs(Math.IEEERemainder(rotation[i] - rotation[h], 2 * Math.PI)) <= MaxAngleDifference)
                {
                    inliers++;
                }
            }

            best = Math.Max(best, inliers);
        }

        return best;
    }
}
