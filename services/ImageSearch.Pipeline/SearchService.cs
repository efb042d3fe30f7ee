using System.Diagnostics;
using System.Runtime.ExceptionServices;
using ImageSearch.Core;
using Microsoft.Extensions.Options;

namespace ImageSearch.Pipeline;

/// <summary>A query: image bytes, an optional region of interest, how many hits.</summary>
/// <remarks><see cref="Rerank"/>: verify the nearest neighbours with local features when the service has them on (<see cref="RerankOptions"/>).</remarks>
public sealed record ImageQuery(ReadOnlyMemory<byte> Image, BoundingBox? Box = null, int Top = 10, bool Exact = false, bool Regions = false, int Expand = 0, bool Rerank = true);

/// <summary>Hits plus where the time went: the embedding (from the start of the search to its vector: decoding, the wait in the query queue, the model), everything after it, and that split into <see cref="Phases"/>.</summary>
public sealed record SearchResult(IReadOnlyList<SearchHit> Hits, double EmbedMilliseconds, double SearchMilliseconds, SearchPhases Phases);

/// <summary>
/// Where a search's time after its embedding went, in milliseconds of wall time (0 for a phase that
/// did not run): the nearest-neighbour search (with query expansion or database-side augmentation),
/// the wait for the query's own local features (extracted beside the embedding), reading the
/// candidates' stored features, and verifying them (parsing, matching, fitting).
/// </summary>
public sealed record SearchPhases(double NeighboursMs, double QueryFeaturesWaitMs, double FeatureReadMs, double VerifyMs)
{
    public static SearchPhases None { get; } = new(0, 0, 0, 0);

    /// <summary>Each phase rounded to <paramref name="digits"/> decimals.</summary>
    public SearchPhases Rounded(int digits) =>
        new(Math.Round(NeighboursMs, digits), Math.Round(QueryFeaturesWaitMs, digits), Math.Round(FeatureReadMs, digits), Math.Round(VerifyMs, digits));

    /// <summary>
    /// The phases of searches that ran at once (one per backend): each as long as its slowest. Null
    /// when none reported any (backends of a version before phases).
    /// </summary>
    public static SearchPhases? Slowest(IEnumerable<SearchPhases?> phases)
    {
        var known = phases.OfType<SearchPhases>().ToList();
        return known.Count == 0
            ? null
            : new SearchPhases(known.Max(p => p.NeighboursMs), known.Max(p => p.QueryFeaturesWaitMs), known.Max(p => p.FeatureReadMs), known.Max(p => p.VerifyMs));
    }
}

/// <summary>Search parameters validated in one place for every interface (HTTP, CLI).</summary>
public static class SearchLimits
{
    public const int MaxTop = 1000;

    /// <summary>Most neighbours query expansion may add.</summary>
    public const int MaxExpand = 50;

    public static int ValidateTop(int top) => top is >= 1 and <= MaxTop
        ? top
        : throw new ArgumentOutOfRangeException(nameof(top), top, $"top must be between 1 and {MaxTop}.");
}

/// <summary>
/// Query by image: decode, crop to the box, embed, k-NN, then (when on) re-rank the nearest
/// <see cref="RerankOptions.Depth"/> by local features: candidates whose SIFT matches agree on one
/// similarity transform with at least <see cref="RerankOptions.MinInliers"/> inliers come first, by
/// inlier count; the rest keep their cosine order. Hosted wherever the store can be reached (the
/// single process in embedded mode, the query service when distributed).
/// </summary>
public sealed class SearchService(
    IImageDecoder decoder,
    IEmbedder embedder,
    IVectorStore store,
    QueryEmbeddingQueue queryEmbeddings,
    IOptions<RerankOptions> rerankOptions,
    ILocalFeatureExtractor? features = null,
    IGeometricVerifier? verifier = null,
    IOptions<AugmentationOptions>? augmentationOptions = null)
{
    private readonly RerankOptions _rerank = rerankOptions.Value;
    private readonly AugmentationOptions _augmentation = augmentationOptions?.Value ?? new AugmentationOptions();

    /// <summary>Whether queries are re-ranked by local features (on, and the extractor and verifier are present).</summary>
    public bool CanRerank => _rerank.Enabled && features is not null && verifier is not null;

    /// <summary>In region mode, each view's scores are taken relative to its neighbour of this rank.</summary>
    public const int RegionBaselineRank = 10;

    public EmbeddingModelInfo Model => embedder.Model;

    /// <summary>Validates a query image's header against limits (no pixel decoding). Throws <see cref="InvalidImageException"/>.</summary>
    public ImageInfo CheckQueryImage(ReadOnlyMemory<byte> image, DecodeLimits limits) => decoder.ReadInfo(image, limits);

    public async Task<SearchResult> SearchAsync(ImageQuery query, CancellationToken ct = default)
    {
        var results = await SearchManyAsync([query], ct).ConfigureAwait(false);
        return results[0];
    }

    /// <summary>Runs many queries with one model call per batch; decoding runs in parallel.</summary>
    public async Task<IReadOnlyList<SearchResult>> SearchManyAsync(IReadOnlyList<ImageQuery> queries, CancellationToken ct = default)
    {
        foreach (var q in queries)
        {
            SearchLimits.ValidateTop(q.Top);
            if (q.Expand is < 0 or > SearchLimits.MaxExpand)
            {
                throw new ArgumentOutOfRangeException(nameof(queries), q.Expand, $"expand must be between 0 and {SearchLimits.MaxExpand}.");
            }
        }

        var model = embedder.Model;
        var started = Stopwatch.GetTimestamp();

        // Each query becomes one view (its box, or the whole image) or, in region mode without a
        // box, the whole image plus sliding windows (QueryRegions), all decoded once. A query to be
        // re-ranked has its local features extracted while it is embedded and searched, from the
        // same decode as its view where one serves both (in region mode, from a decode of their own).
        var views = new IReadOnlyList<RgbImage>[queries.Count];
        var queryFeatures = new Task<LocalFeatureSet>?[queries.Count];
        try
        {
            Parallel.For(0, queries.Count, new ParallelOptions { CancellationToken = ct }, i =>
            {
                var q = queries[i];
                var rerank = CanRerank && q.Rerank;
                if (q.Regions && q.Box is null)
                {
                    var info = decoder.ReadInfo(q.Image);
                    queryFeatures[i] = rerank ? Task.Run(() => features!.Extract(q.Image), ct) : null;
                    views[i] = decoder.PrepareRegions(q.Image, model.InputWidth, model.InputHeight, QueryRegions.For(info.Width, info.Height));
                }
                else if (rerank)
                {
                    // Where the features' view would need a decode of its own, that decode runs beside the model, not before it.
                    var (prepared, fitted) = decoder.PrepareAndFitIfShared(q.Image, model.InputWidth, model.InputHeight, features!.MaxSide, q.Box);
                    queryFeatures[i] = Task.Run(() => fitted is null ? features.Extract(q.Image, q.Box) : features.Extract(fitted), ct);
                    views[i] = [prepared.Pixels];
                }
                else
                {
                    views[i] = [decoder.Prepare(q.Image, model.InputWidth, model.InputHeight, q.Box).Pixels];
                }
            });
        }
        catch (AggregateException e) when (e.InnerExceptions.OfType<InvalidImageException>().FirstOrDefault() is { } bad)
        {
            // Callers handle one kind of input error, whether they sent one query or many.
            ExceptionDispatchInfo.Throw(bad);
        }
        finally
        {
            // A query that fails leaves the others' extractions unawaited: their failures are observed here.
            foreach (var pending in queryFeatures)
            {
                pending?.ContinueWith(t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
            }
        }

        var vectors = await queryEmbeddings.EmbedAsync(views.SelectMany(v => v).ToArray(), ct).ConfigureAwait(false);
        var embedMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds / queries.Count;

        var results = new SearchResult[queries.Count];
        var next = 0;
        for (var i = 0; i < queries.Count; i++)
        {
            var t = Stopwatch.GetTimestamp();
            var q = queries[i];
            var wanted = queryFeatures[i] is null ? q.Top : Math.Max(q.Top, _rerank.Depth);
            var augment = _augmentation.Neighbours > 0 && views[i].Count == 1;
            wanted = augment ? Math.Max(wanted, _augmentation.Depth) : wanted;
            IReadOnlyList<SearchHit> hits;
            if (views[i].Count == 1)
            {
                // Expansion needs its neighbours even when fewer hits are wanted.
                hits = await store.SearchAsync(vectors[next], new VectorQuery(Math.Max(wanted, q.Expand), q.Exact), ct).ConfigureAwait(false);
                hits = q.Expand > 0 && hits.Count > 0
                    ? await ExpandAsync(vectors[next], hits, q.Expand, wanted, q.Exact, ct).ConfigureAwait(false)
                    : hits.Take(wanted).ToList();
                if (augment)
                {
                    hits = await DatabaseAugmentation.RescoreAsync(store, vectors[next], hits, _augmentation.Neighbours, _augmentation.Depth, q.Exact, ct).ConfigureAwait(false);
                }
            }
            else
            {
                // An image's score is its best view's margin over that view's 10th neighbour: a
                // window of background resembles many gallery images about equally (small margin),
                // the window that frames a pasted photo resembles that one photo far more than the
                // rest. Measured against the plain best cosine in docs/QUALITY.md.
                var best = new Dictionary<ImageId, SearchHit>();
                for (var v = 0; v < views[i].Count; v++)
                {
                    var viewHits = await store.SearchAsync(vectors[next + v], new VectorQuery(Math.Max(wanted, RegionBaselineRank), q.Exact), ct).ConfigureAwait(false);
                    var baseline = viewHits.Count > 0 ? viewHits[Math.Min(RegionBaselineRank, viewHits.Count) - 1].Score : 0f;
                    foreach (var raw in viewHits)
                    {
                        var hit = raw with { Score = raw.Score - baseline };
                        if (!best.TryGetValue(hit.Id, out var seen) || hit.Score > seen.Score)
                        {
                            best[hit.Id] = hit;
                        }
                    }
                }

                hits = best.Values.OrderByDescending(h => h.Score).ThenBy(h => h.Id.ToString(), StringComparer.Ordinal).Take(wanted).ToList();
            }

            var phases = SearchPhases.None with { NeighboursMs = Stopwatch.GetElapsedTime(t).TotalMilliseconds };
            if (queryFeatures[i] is { } pending)
            {
                var waited = Stopwatch.GetTimestamp();
                var own = await pending.ConfigureAwait(false);
                phases = phases with { QueryFeaturesWaitMs = Stopwatch.GetElapsedTime(waited).TotalMilliseconds };
                (hits, phases) = await RerankAsync(hits, own, phases, ct).ConfigureAwait(false);
            }

            hits = hits.Take(q.Top).ToList();

            next += views[i].Count;
            results[i] = new SearchResult(hits, embedMs, Stopwatch.GetElapsedTime(t).TotalMilliseconds, phases);
        }

        return results;
    }

    /// <summary>
    /// Alpha query expansion (Radenović et al.): the query plus its top <see cref="ImageQuery.Expand"/>
    /// neighbours' vectors, each weighted by its similarity to the power <see cref="ExpansionAlpha"/>,
    /// renormalised and searched again.
    /// </summary>
    private async Task<IReadOnlyList<SearchHit>> ExpandAsync(float[] query, IReadOnlyList<SearchHit> first, int expand, int top, bool exact, CancellationToken ct)
    {
        var expanded = (float[])query.Clone();
        foreach (var hit in first.Take(expand))
        {
            if (hit.Score <= 0 || await store.GetAsync(hit.Id, ct).ConfigureAwait(false) is not { } record)
            {
                continue;
            }

            var weight = MathF.Pow(hit.Score, ExpansionAlpha);
            for (var d = 0; d < expanded.Length; d++)
            {
                expanded[d] += weight * record.Vector[d];
            }
        }

        var norm = MathF.Sqrt(expanded.Sum(x => x * x));
        if (norm > 0)
        {
            for (var d = 0; d < expanded.Length; d++)
            {
                expanded[d] /= norm;
            }
        }

        return await store.SearchAsync(expanded, new VectorQuery(top, exact), ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Verifies the first <see cref="RerankOptions.Depth"/> candidates against the query's local
    /// features (in parallel) and moves those with at least <see cref="RerankOptions.MinInliers"/>
    /// inliers to the front, most inliers first; the others keep their order. Candidates stored
    /// without features (an index made before they existed) are left unverified.
    /// </summary>
    private async Task<(IReadOnlyList<SearchHit> Hits, SearchPhases Phases)> RerankAsync(IReadOnlyList<SearchHit> candidates, LocalFeatureSet query, SearchPhases phases, CancellationToken ct)
    {
        var head = candidates.Take(_rerank.Depth).ToList();
        if (head.Count == 0 || query.Count == 0)
        {
            return (candidates, phases);
        }

        var t = Stopwatch.GetTimestamp();
        var stored = await store.GetLocalFeaturesAsync(head.Select(h => h.Id).ToList(), ct).ConfigureAwait(false);
        phases = phases with { FeatureReadMs = phases.FeatureReadMs + Stopwatch.GetElapsedTime(t).TotalMilliseconds };
        t = Stopwatch.GetTimestamp();
        var inliers = new int?[head.Count];

        // One slice of the candidates per core, each verified with one call (the native matcher
        // then searches the whole slice in one go).
        var slices = Math.Min(Environment.ProcessorCount, head.Count);
        Parallel.For(0, slices, new ParallelOptions { CancellationToken = ct }, s =>
        {
            var positions = new List<int>();
            var candidates = new List<LocalFeatureSet>();
            for (var i = s; i < head.Count; i += slices)
            {
                // A damaged blob leaves its candidate unverified rather than failing the query.
                if (stored.TryGetValue(head[i].Id, out var blob) && TryParse(blob) is { } candidate)
                {
                    positions.Add(i);
                    candidates.Add(candidate);
                }
            }

            var counts = verifier!.CountInliers(query, candidates);
            for (var k = 0; k < positions.Count; k++)
            {
                inliers[positions[k]] = counts[k];
            }
        });

        var checkedHits = head.Select((h, i) => h with { Inliers = inliers[i] }).ToList();
        var min = _rerank.MinInliers;
        IReadOnlyList<SearchHit> ranked = checkedHits.Where(h => h.Inliers >= min).OrderByDescending(h => h.Inliers).ThenByDescending(h => h.Score)
            .Concat(checkedHits.Where(h => !(h.Inliers >= min)))
            .Concat(candidates.Skip(head.Count))
            .ToList();
        return (ranked, phases with { VerifyMs = Stopwatch.GetElapsedTime(t).TotalMilliseconds });
    }

    private static LocalFeatureSet? TryParse(byte[] blob)
    {
        try
        {
            return LocalFeatureSet.FromBytes(blob);
        }
        catch (FormatException)
        {
            return null;
        }
    }

    /// <summary>The exponent of alpha query expansion's weights.</summary>
    public const float ExpansionAlpha = 1;

    /// <summary>Images similar to an indexed one (itself excluded), re-ranked with its stored local features when there are any.</summary>
    public async Task<SearchResult?> SearchByIdAsync(ImageId id, int top, bool exact = false, bool rerank = true, CancellationToken ct = default)
    {
        SearchLimits.ValidateTop(top);
        if (await store.GetAsync(id, ct).ConfigureAwait(false) is not { } record)
        {
            return null;
        }

        var t = Stopwatch.GetTimestamp();
        var own = rerank && CanRerank && (await store.GetLocalFeaturesAsync([id], ct).ConfigureAwait(false)).TryGetValue(id, out var blob)
            ? TryParse(blob)
            : null;
        var ownRead = Stopwatch.GetElapsedTime(t).TotalMilliseconds;
        var wanted = own is null ? top : Math.Max(top, _rerank.Depth);
        wanted = _augmentation.Neighbours > 0 ? Math.Max(wanted, _augmentation.Depth) : wanted;
        var neighbours = Stopwatch.GetTimestamp();
        var hits = await store.SearchAsync(record.Vector, new VectorQuery(wanted + 1, exact), ct).ConfigureAwait(false);
        IReadOnlyList<SearchHit> others = hits.Where(h => h.Id != id).ToList();
        if (_augmentation.Neighbours > 0)
        {
            // The image itself is the query's copy in the gallery: it augments no candidate.
            others = await DatabaseAugmentation.RescoreAsync(store, record.Vector, others, _augmentation.Neighbours, _augmentation.Depth, exact, ct).ConfigureAwait(false);
        }

        var phases = new SearchPhases(Stopwatch.GetElapsedTime(neighbours).TotalMilliseconds, 0, ownRead, 0);
        if (own is not null)
        {
            (others, phases) = await RerankAsync(others, own, phases, ct).ConfigureAwait(false);
        }

        return new SearchResult(others.Take(top).ToList(), 0, Stopwatch.GetElapsedTime(t).TotalMilliseconds, phases);
    }
}
