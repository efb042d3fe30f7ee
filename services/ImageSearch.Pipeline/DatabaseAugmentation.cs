using System.ComponentModel.DataAnnotations;
using ImageSearch.Core;

namespace ImageSearch.Pipeline;

/// <summary>
/// Database-side augmentation, done at search time on the candidates. Section "Augmentation".
/// Off by default; measured in docs/QUALITY.md.
/// </summary>
public sealed class AugmentationOptions
{
    public const string Section = "Augmentation";

    /// <summary>Neighbours averaged into each candidate's vector (0 = off).</summary>
    [Range(0, 50)]
    public int Neighbours { get; set; }

    /// <summary>How many of a query's nearest neighbours are re-scored with their augmented vectors.</summary>
    [Range(1, 1000)]
    public int Depth { get; set; } = 100;
}

/// <summary>
/// Database-side augmentation (DBA, Arandjelović and Zisserman; alpha-DBA as in Radenović et al.):
/// a gallery vector x is replaced by x + Σ sim(x, nⱼ)^α nⱼ over its k nearest gallery neighbours,
/// renormalised, so that an image is described together with the images most like it.
/// </summary>
/// <remarks>
/// <para>
/// Done at search time, on the candidates only: the query is searched with the stored vectors as
/// usual, then each of its first <see cref="AugmentationOptions.Depth"/> candidates gets its
/// augmented vector from its neighbours in the current gallery (one k-NN per candidate) and the
/// candidates are re-ordered by the query's cosine with those. Nothing derived is stored, so a
/// gallery that changes (images added, changed, removed) needs no maintenance pass and nothing can
/// go stale: a candidate's augmentation always uses today's neighbours. The cost is
/// <see cref="AugmentationOptions.Depth"/> extra k-NN searches per query, and the limit is that
/// augmentation only re-orders what the plain vectors already brought into the top
/// <see cref="AugmentationOptions.Depth"/>; a DBA that rewrites the index could also bring in images
/// from further down.
/// </para>
/// <para>
/// With several query services behind the gateway, each shard finds a candidate's neighbours among
/// its own images only, so augmented scores there are approximate (as query expansion's are).
/// Applied to image queries with one view (not region mode, whose scores are margins) and to search
/// by id ("find similar"); with query expansion, the expanded hits are re-scored against the query as sent.
/// </para>
/// </remarks>
public static class DatabaseAugmentation
{
    /// <summary>The exponent of the neighbours' weights (the same as query expansion's, for the same reason:
    /// whitened cosines of neighbours are around 0.3-0.5, and a larger α would give them no weight).</summary>
    public const float Alpha = 1;

    /// <summary>
    /// A neighbour this close to the query is the query itself, stored in the gallery (a "find
    /// similar" on an indexed photo, or a leave-one-out benchmark query). It is not used to augment a
    /// candidate: it would only add the candidate's cosine with the query a second time, and a query
    /// from outside the gallery could never have it.
    /// </summary>
    public const float QueryCopyCosine = 0.999f;

    /// <summary>
    /// <paramref name="self"/> plus each neighbour's vector weighted by max(0, its cosine with
    /// <paramref name="self"/>)^<paramref name="alpha"/>, L2-normalised. Neighbours with a cosine of 0 or
    /// less add nothing; with no neighbours the result is <paramref name="self"/> normalised.
    /// </summary>
    public static float[] Augment(ReadOnlySpan<float> self, IReadOnlyList<float[]> neighbours, float alpha = Alpha)
    {
        ArgumentNullException.ThrowIfNull(neighbours);
        var result = self.ToArray();
        foreach (var n in neighbours)
        {
            if (n.Length != self.Length)
            {
                throw new ArgumentException($"A neighbour has {n.Length} dimensions, not {self.Length}.", nameof(neighbours));
            }

            var similarity = Dot(self, n);
            if (similarity <= 0)
            {
                continue;
            }

            var weight = MathF.Pow(similarity, alpha);
            for (var d = 0; d < result.Length; d++)
            {
                result[d] += weight * n[d];
            }
        }

        var norm = MathF.Sqrt(Dot(result, result));
        if (norm > 0)
        {
            for (var d = 0; d < result.Length; d++)
            {
                result[d] /= norm;
            }
        }

        return result;
    }

    /// <summary>
    /// Scores each hit by the cosine of <paramref name="query"/> with its augmented vector
    /// (<paramref name="augmented"/>[i] for <paramref name="hits"/>[i]) and orders them by it, highest
    /// first; ties keep their original order.
    /// </summary>
    public static IReadOnlyList<SearchHit> Rescore(ReadOnlySpan<float> query, IReadOnlyList<SearchHit> hits, IReadOnlyList<float[]> augmented)
    {
        ArgumentNullException.ThrowIfNull(hits);
        ArgumentNullException.ThrowIfNull(augmented);
        if (hits.Count != augmented.Count)
        {
            throw new ArgumentException($"{augmented.Count} augmented vectors for {hits.Count} hits.", nameof(augmented));
        }

        var scored = new SearchHit[hits.Count];
        for (var i = 0; i < hits.Count; i++)
        {
            scored[i] = hits[i] with { Score = Dot(query, augmented[i]) };
        }

        // OrderByDescending is a stable sort: equal scores keep the k-NN order.
        return scored.OrderByDescending(h => h.Score).ToList();
    }

    /// <summary>
    /// Re-orders the first <paramref name="depth"/> of <paramref name="candidates"/> by the query's
    /// cosine with their augmented vectors, each candidate augmented with its
    /// <paramref name="neighbours"/> nearest gallery images (itself and copies of the query excluded) from
    /// <paramref name="store"/>; candidates beyond <paramref name="depth"/> follow unchanged. A
    /// candidate removed from the store meanwhile keeps its place at the end of the re-scored head.
    /// </summary>
    public static async Task<IReadOnlyList<SearchHit>> RescoreAsync(
        IVectorStore store, float[] query, IReadOnlyList<SearchHit> candidates, int neighbours, int depth, bool exact, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(candidates);
        if (neighbours <= 0 || candidates.Count == 0)
        {
            return candidates;
        }

        var norm = MathF.Sqrt(Dot(query, query));
        query = norm > 0 ? query.Select(x => x / norm).ToArray() : query;
        var head = candidates.Take(depth).ToList();
        var known = new Dictionary<ImageId, float[]>();
        var present = new List<SearchHit>(head.Count);
        var augmented = new List<float[]>(head.Count);
        var gone = new List<SearchHit>();
        foreach (var hit in head)
        {
            if (await VectorOfAsync(hit.Id).ConfigureAwait(false) is not { } self)
            {
                gone.Add(hit);
                continue;
            }

            // One more than wanted for the candidate itself, one for a copy of the query.
            var around = await store.SearchAsync(self, new VectorQuery(neighbours + 2, exact), ct).ConfigureAwait(false);
            var vectors = new List<float[]>(neighbours);
            foreach (var n in around.Where(n => n.Id != hit.Id))
            {
                if (vectors.Count < neighbours && await VectorOfAsync(n.Id).ConfigureAwait(false) is { } v && Dot(query, v) < QueryCopyCosine)
                {
                    vectors.Add(v);
                }
            }

            present.Add(hit);
            augmented.Add(Augment(self, vectors));
        }

        return Rescore(query, present, augmented).Concat(gone).Concat(candidates.Skip(head.Count)).ToList();

        async Task<float[]?> VectorOfAsync(ImageId id)
        {
            if (!known.TryGetValue(id, out var vector))
            {
                vector = (await store.GetAsync(id, ct).ConfigureAwait(false))?.Vector;
                if (vector is not null)
                {
                    known[id] = vector;
                }
            }

            return vector;
        }
    }

    private static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        // Candidates x neighbours x 512 multiply-adds: small next to the k-NN searches that find them.
        float sum = 0;
        for (var d = 0; d < a.Length; d++)
        {
            sum += a[d] * b[d];
        }

        return sum;
    }
}
