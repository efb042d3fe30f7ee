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
/// </summary>
public sealed class GeometricVerifier(IOptions<LocalFeatureOptions> options) : IGeometricVerifier
{
    private const double MaxLogScaleDifference = 0.7; // a factor of 2 either way
    private const double MaxAngleDifference = Math.PI / 6;

    private readonly LocalFeatureOptions _options = options.Value;

    /// <inheritdoc />
    public int CountInliers(LocalFeatureSet query, LocalFeatureSet candidate)
    {
        ArgumentNullException.ThrowIfNull(query);
        ArgumentNullException.ThrowIfNull(candidate);
        var matches = Match(query, candidate, _options.Ratio);
        if (matches.Count < 2)
        {
            return matches.Count;
        }

        var tolerance = _options.InlierTolerance * Math.Max(candidate.Width, candidate.Height);
        return BestSimilarity(query.Frames, candidate.Frames, matches, tolerance);
    }

    /// <summary>
    /// Pairs (query feature, candidate feature) passing the ratio test; a candidate feature keeps
    /// only its closest query feature, so a repeated pattern cannot vote many times.
    /// </summary>
    internal static List<(int Query, int Candidate)> Match(LocalFeatureSet query, LocalFeatureSet candidate, double ratio)
    {
        if (candidate.Count < 2)
        {
            return [];
        }

        var owner = new int[candidate.Count];
        var ownerDistance = new int[candidate.Count];
        Array.Fill(owner, -1);

        var limit = ratio * ratio;
        var q = query.Descriptors.AsSpan();
        var c = candidate.Descriptors.AsSpan();
        const int L = LocalFeatureSet.DescriptorLength;
        for (var i = 0; i < query.Count; i++)
        {
            var a = q.Slice(i * L, L);
            int best = int.MaxValue, second = int.MaxValue, bestIndex = -1;
            for (var j = 0; j < candidate.Count; j++)
            {
                var d = SquaredDistance(a, c.Slice(j * L, L));
                if (d < best)
                {
                    second = best;
                    best = d;
                    bestIndex = j;
                }
                else if (d < second)
                {
                    second = d;
                }
            }

            if (best < limit * second && (owner[bestIndex] < 0 || best < ownerDistance[bestIndex]))
            {
                owner[bestIndex] = i;
                ownerDistance[bestIndex] = best;
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
