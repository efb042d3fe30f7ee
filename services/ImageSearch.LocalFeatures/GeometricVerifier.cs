using System.Buffers;
using System.Runtime.InteropServices;
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
/// The nearest-two search of the ratio test runs natively (sift_shim.c: AMX-INT8 on the shim's own
/// threads, or AVX-512 VNNI) where the CPU can, else as a managed loop; all give the same matches
/// (exact integer distances, same ties).
/// </summary>
public sealed class GeometricVerifier(IOptions<LocalFeatureOptions> options) : IGeometricVerifier
{
    private const double MaxLogScaleDifference = 0.7; // a factor of 2 either way
    private const double MaxAngleDifference = Math.PI / 6;

    private readonly LocalFeatureOptions _options = options.Value;
    private readonly int _kernel = options.Value.ReferenceMatch ? ManagedMatchKernel
        : options.Value.Amx ? BestMatchKernel
        : Math.Min(BestMatchKernel, Avx512VnniMatch);

    /// <summary>The kernel this verifier matches with, in words (benchmarks print it).</summary>
    public string KernelName => NameOf(_kernel);

    /// <inheritdoc />
    public int CountInliers(LocalFeatureSet query, LocalFeatureSet candidate)
    {
        ArgumentNullException.ThrowIfNull(candidate);
        return CountInliers(query, [candidate])[0];
    }

    /// <inheritdoc />
    /// <remarks>The nearest-two search of every candidate is one native call (one hand-over to the AMX worker).</remarks>
    public int[] CountInliers(LocalFeatureSet query, IReadOnlyList<LocalFeatureSet> candidates)
    {
        ArgumentNullException.ThrowIfNull(query);
        ArgumentNullException.ThrowIfNull(candidates);
        var matches = MatchMany(query, candidates, _options.Ratio, _kernel);
        var inliers = new int[candidates.Count];
        for (var i = 0; i < inliers.Length; i++)
        {
            var candidate = candidates[i];
            inliers[i] = matches[i].Count < 2
                ? matches[i].Count
                : BestSimilarity(query.Frames, candidate.Frames, matches[i], _options.InlierTolerance * Math.Max(candidate.Width, candidate.Height));
        }

        return inliers;
    }

    /// <summary>Match kernel: the plain loop over <see cref="ScalarSquaredDistance"/>, the reference.</summary>
    internal const int ScalarMatch = 0;

    /// <summary>Match kernel: the same loop with the AVX2 <see cref="SquaredDistance"/>.</summary>
    internal const int Avx2Match = 1;

    /// <summary>Match kernel: the native AVX-512 VNNI search (sift_shim.c, is_sift_nearest2_many).</summary>
    internal const int Avx512VnniMatch = 2;

    /// <summary>Match kernel: the native AMX-INT8 search, run on the shim's own threads (sift_shim.c explains why).</summary>
    internal const int AmxMatch = 3;

    /// <summary>The fastest managed match kernel this CPU runs (<see cref="LocalFeatureOptions.ReferenceMatch"/>).</summary>
    internal static int ManagedMatchKernel => Avx2.IsSupported ? Avx2Match : ScalarMatch;

    /// <summary>The fastest match kernel this CPU (and OS) runs; a kernel above it falls back to it.</summary>
    internal static int BestMatchKernel { get; } = FindBestMatchKernel();

    /// <summary>Whether matching runs a native kernel on this CPU (else the managed loop).</summary>
    public static bool NativeMatchSupported => BestMatchKernel >= Avx512VnniMatch;

    /// <summary>Whether the AMX-INT8 kernel runs here (CPU, and a kernel that granted the tile state).</summary>
    public static bool AmxMatchSupported => BestMatchKernel == AmxMatch;

    /// <summary>The kernel matching runs by default, in words (benchmarks print it).</summary>
    public static string MatchKernelName => NameOf(BestMatchKernel);

    private static string NameOf(int kernel) => kernel switch
    {
        AmxMatch => "AMX-INT8",
        Avx512VnniMatch => "AVX-512 VNNI",
        Avx2Match => "managed loop, AVX2",
        _ => "managed loop",
    };

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
        ArgumentNullException.ThrowIfNull(candidate);
        return MatchMany(query, [candidate], ratio, kernel)[0];
    }

    /// <summary><see cref="Match(LocalFeatureSet, LocalFeatureSet, double, int)"/> against each candidate, with one nearest-two search for all.</summary>
    internal static List<(int Query, int Candidate)>[] MatchMany(LocalFeatureSet query, IReadOnlyList<LocalFeatureSet> candidates, double ratio, int kernel)
    {
        ArgumentNullException.ThrowIfNull(query);
        var result = new List<(int Query, int Candidate)>[candidates.Count];
        var searched = new List<LocalFeatureSet>(candidates.Count);
        var at = new List<int>(candidates.Count);
        for (var i = 0; i < candidates.Count; i++)
        {
            var candidate = candidates[i] ?? throw new ArgumentException($"Candidate {i} is null.", nameof(candidates));
            if (candidate.Count >= 2 && query.Count > 0)
            {
                searched.Add(candidate);
                at.Add(i);
            }
            else
            {
                result[i] = [];
            }
        }

        if (searched.Count == 0)
        {
            return result;
        }

        var n = query.Count;
        var total = searched.Count * n;
        var pool = ArrayPool<int>.Shared;
        int[] best = pool.Rent(total), bestIndex = pool.Rent(total), second = pool.Rent(total);
        try
        {
            NearestMany(query, searched, kernel, best, bestIndex, second);
            for (var k = 0; k < searched.Count; k++)
            {
                result[at[k]] = RatioMatches(best.AsSpan(k * n, n), bestIndex.AsSpan(k * n, n), second.AsSpan(k * n, n), searched[k].Count, ratio);
            }

            return result;
        }
        finally
        {
            pool.Return(best);
            pool.Return(bestIndex);
            pool.Return(second);
        }
    }

    /// <summary>Lowe's ratio test on one candidate's nearest two, each candidate feature kept by its closest query feature.</summary>
    private static List<(int Query, int Candidate)> RatioMatches(ReadOnlySpan<int> best, ReadOnlySpan<int> bestIndex, ReadOnlySpan<int> second, int candidateCount, double ratio)
    {
        var owner = new int[candidateCount];
        var ownerDistance = new int[candidateCount];
        Array.Fill(owner, -1);

        var limit = ratio * ratio;
        for (var i = 0; i < best.Length; i++)
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

    /// <summary>
    /// For each query descriptor, the squared distance to the nearest candidate descriptor (the first
    /// one, by index, among equal distances), its index, and the second smallest distance (equal to
    /// the nearest when two candidates tie). The candidate has at least two features; a kernel this
    /// CPU lacks falls back to <see cref="BestMatchKernel"/>.
    /// </summary>
    internal static void Nearest(LocalFeatureSet query, LocalFeatureSet candidate, int kernel, Span<int> best, Span<int> bestIndex, Span<int> second)
    {
        ArgumentNullException.ThrowIfNull(candidate);
        NearestMany(query, [candidate], kernel, best, bestIndex, second);
    }

    /// <summary>
    /// <see cref="Nearest"/> for each candidate set, written at i * query.Count for set i. Every set has
    /// at least two features. The native kernels search all sets in one call.
    /// </summary>
    internal static void NearestMany(LocalFeatureSet query, IReadOnlyList<LocalFeatureSet> candidates, int kernel, Span<int> best, Span<int> bestIndex, Span<int> second)
    {
        ArgumentNullException.ThrowIfNull(query);
        ArgumentNullException.ThrowIfNull(candidates);
        var n = query.Count;
        var total = (long)candidates.Count * n;

        // The native kernel writes total values to each span and reads Count descriptors from each set.
        if (candidates.Any(c => c is null || c.Count < 2 || c.Descriptors.Length < c.Count * LocalFeatureSet.DescriptorLength)
            || best.Length < total || bestIndex.Length < total || second.Length < total
            || query.Descriptors.Length < n * LocalFeatureSet.DescriptorLength)
        {
            throw new ArgumentException("Nearest needs two candidate features or more, all descriptor bytes and room for every query feature.");
        }

        var effective = Math.Min(kernel, BestMatchKernel);
        if (effective >= Avx512VnniMatch)
        {
            if (n > 0 && candidates.Count > 0)
            {
                NearestNative(query, candidates, effective == AmxMatch ? SiftNative.MatchAmx : SiftNative.MatchVnni, best, bestIndex, second);
            }

            return;
        }

        for (var i = 0; i < candidates.Count; i++)
        {
            var b = best.Slice(i * n, n);
            var bi = bestIndex.Slice(i * n, n);
            var s = second.Slice(i * n, n);
            if (effective == ScalarMatch)
            {
                NearestManaged<ScalarDistance>(query, candidates[i], b, bi, s);
            }
            else
            {
                NearestManaged<Avx2Distance>(query, candidates[i], b, bi, s);
            }
        }
    }

    private static unsafe void NearestNative(LocalFeatureSet query, IReadOnlyList<LocalFeatureSet> candidates, int level, Span<int> best, Span<int> bestIndex, Span<int> second)
    {
        var handles = new GCHandle[candidates.Count];
        var pointers = new nint[candidates.Count];
        var counts = new int[candidates.Count];
        try
        {
            for (var i = 0; i < candidates.Count; i++)
            {
                handles[i] = GCHandle.Alloc(candidates[i].Descriptors, GCHandleType.Pinned);
                pointers[i] = handles[i].AddrOfPinnedObject();
                counts[i] = candidates[i].Count;
            }

            fixed (byte* queryBytes = query.Descriptors)
            fixed (nint* sets = pointers)
            fixed (int* c = counts)
            fixed (int* b = best)
            fixed (int* bi = bestIndex)
            fixed (int* s = second)
            {
                var status = SiftNative.Nearest2Many(queryBytes, query.Count, (byte**)sets, c, candidates.Count, level, b, bi, s);
                if (status == SiftNative.OutOfMemory)
                {
                    throw new InsufficientMemoryException($"Matching {query.Count} features against {candidates.Count} sets could not allocate its scratch.");
                }

                if (status != 0)
                {
                    throw new InvalidOperationException($"is_sift_nearest2_many refused {query.Count} features against {candidates.Count} sets (status {status}).");
                }
            }
        }
        finally
        {
            foreach (var handle in handles)
            {
                if (handle.IsAllocated)
                {
                    handle.Free();
                }
            }
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
            switch (SiftNative.MatchLevel())
            {
                case SiftNative.MatchAmx:
                    return AmxMatch;
                case SiftNative.MatchVnni:
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
