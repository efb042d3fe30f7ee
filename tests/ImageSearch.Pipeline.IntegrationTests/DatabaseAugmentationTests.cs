using ImageSearch.Core;
using Microsoft.Extensions.DependencyInjection;

namespace ImageSearch.Pipeline.IntegrationTests;

/// <summary>
/// Database-side augmentation: the arithmetic (pure), then the search-time re-scoring on the real
/// index of real photos embedded by the real model, checked against a brute-force recomputation
/// from the stored vectors, before and after the gallery changes.
/// </summary>
public sealed class DatabaseAugmentationTests : IDisposable
{
    private static readonly ImagePayload Payload = new("a.jpg", 1, 1, 1, "00", DateTimeOffset.UnixEpoch);
    private readonly string root = Directory.CreateTempSubdirectory("dba-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    [Fact]
    public void A_vector_is_averaged_with_its_neighbours_weighted_by_their_cosine_and_renormalised()
    {
        float[] self = [1, 0, 0];
        float[] near = [0.6f, 0.8f, 0];   // cosine 0.6
        float[] far = [0.2f, 0, 0.98f];    // cosine 0.2

        var augmented = DatabaseAugmentation.Augment(self, [near, far]);

        // 1*self + 0.6*near + 0.2*far = (1.4, 0.48, 0.196), then L2-normalised.
        var expected = new[] { 1.4f, 0.48f, 0.196f };
        var norm = MathF.Sqrt(expected.Sum(x => x * x));
        Assert.Equal(expected.Select(x => x / norm), augmented, (a, b) => MathF.Abs(a - b) < 1e-5f);
        Assert.Equal(1f, MathF.Sqrt(augmented.Sum(x => x * x)), 1e-5f);
    }

    [Fact]
    public void Neighbours_with_no_positive_cosine_add_nothing_and_no_neighbours_leave_the_vector_as_it_was()
    {
        float[] self = [0.6f, 0.8f];
        Assert.Equal(self, DatabaseAugmentation.Augment(self, [[-0.6f, -0.8f], [0.8f, -0.6f]]));
        Assert.Equal(self, DatabaseAugmentation.Augment(self, []));
        Assert.Throws<ArgumentException>(() => DatabaseAugmentation.Augment(self, [[1f, 0f, 0f]]));
    }

    [Fact]
    public void Rescoring_orders_hits_by_the_query_cosine_with_their_augmented_vectors_keeping_ties_in_order()
    {
        var hits = new[] { Hit(1, 0.9f), Hit(2, 0.8f), Hit(3, 0.7f), Hit(4, 0.6f) };
        float[] query = [1, 0];
        float[][] augmented = [[0.5f, 0.866f], [1, 0], [0.5f, 0.866f], [0.8f, 0.6f]];

        var rescored = DatabaseAugmentation.Rescore(query, hits, augmented);

        Assert.Equal([hits[1].Id, hits[3].Id, hits[0].Id, hits[2].Id], rescored.Select(h => h.Id));
        Assert.Equal([1f, 0.8f, 0.5f, 0.5f], rescored.Select(h => h.Score));
        Assert.Throws<ArgumentException>(() => DatabaseAugmentation.Rescore(query, hits, augmented[..3]));
    }

    [Fact]
    public async Task On_the_real_index_candidates_are_rescored_with_their_current_neighbours_and_a_removed_image_stops_counting_at_once()
    {
        const int Neighbours = 3;
        var (library, paths) = TestData.MakeLibrary(root, 24);
        paths = paths.Where(p => p != "copy.jpg").ToArray();
        File.Delete(Path.Combine(library, "copy.jpg"));
        var settings = new Dictionary<string, string?> { ["Augmentation:Neighbours"] = $"{Neighbours}", ["Rerank:Enabled"] = "false" };
        await using var host = await PipelineHost.StartAsync(PipelineRoles.Ingest | PipelineRoles.Indexer | PipelineRoles.Query, library, Path.Combine(root, "db"), null, settings);
        var store = host.Services.GetRequiredService<IVectorStore>();
        await host.AnnounceAsync(library, paths);
        await TestData.UntilAsync(async () => await store.CountAsync() == paths.Length, "every photo to be indexed");
        var search = host.Services.GetRequiredService<SearchService>();

        // A crop of one photo (its middle half), as a user's query would be.
        var query = await File.ReadAllBytesAsync(Path.Combine(library, paths[5]));
        var decoder = host.Services.GetRequiredService<IImageDecoder>();
        var info = decoder.ReadInfo(query);
        var box = new BoundingBox(info.Width / 4, info.Height / 4, info.Width / 2, info.Height / 2);
        var embedder = host.Services.GetRequiredService<IEmbedder>();
        var q = Normalised(embedder.Embed([decoder.Prepare(query, host.Model.InputWidth, host.Model.InputHeight, box).Pixels])[0]);
        var plain = (await store.SearchAsync(q, new VectorQuery(paths.Length, Exact: true))).Select(h => h.Id).ToList();

        var augmented = await search.SearchAsync(new ImageQuery(query, box, Top: paths.Length));
        var expected = await BruteForceAsync(store, q, plain, Neighbours);
        Assert.Equal(expected.Select(e => e.Id), augmented.Hits.Select(h => h.Id));
        Assert.Equal(expected.Select(e => e.Score), augmented.Hits.Select(h => h.Score), (a, b) => MathF.Abs(a - b) < 1e-4f);

        // Augmentation re-orders the candidates (on these photos it changes the order), it never drops one.
        Assert.NotEqual(plain, augmented.Hits.Select(h => h.Id));
        Assert.Equal(plain.Select(id => id.ToString()).Order(StringComparer.Ordinal), augmented.Hits.Select(h => h.Id.ToString()).Order(StringComparer.Ordinal));

        // The gallery changes: the nearest neighbour of the top candidate goes. Nothing is
        // recomputed or re-indexed, yet the next search augments with the neighbours left.
        var top = await store.GetAsync(augmented.Hits[0].Id);
        var gone = (await store.SearchAsync(top!.Vector, new VectorQuery(2, Exact: true))).First(h => h.Id != top.Id).Id;
        Assert.Equal(1, await store.DeleteAsync([gone]));
        var after = await search.SearchAsync(new ImageQuery(query, box, Top: paths.Length));
        var expectedAfter = await BruteForceAsync(store, q, plain.Where(id => id != gone).ToList(), Neighbours);
        Assert.DoesNotContain(after.Hits, h => h.Id == gone);
        Assert.Equal(expectedAfter.Select(e => e.Id), after.Hits.Select(h => h.Id));
        Assert.Equal(expectedAfter.Select(e => e.Score), after.Hits.Select(h => h.Score), (a, b) => MathF.Abs(a - b) < 1e-4f);
        Assert.NotEqual(expected.Where(e => e.Id != gone).Select(e => e.Score), expectedAfter.Select(e => e.Score));

        // A query that is itself in the gallery (the whole photo): its stored copy augments no candidate.
        var whole = Normalised(embedder.Embed([decoder.Prepare(query, host.Model.InputWidth, host.Model.InputHeight).Pixels])[0]);
        var remaining = (await store.SearchAsync(whole, new VectorQuery(paths.Length, Exact: true))).Select(h => h.Id).ToList();
        Assert.True(Dot(whole, (await store.GetAsync(remaining[0]))!.Vector) >= DatabaseAugmentation.QueryCopyCosine);
        var similar = await search.SearchAsync(new ImageQuery(query, Top: paths.Length));
        var expectedSimilar = await BruteForceAsync(store, whole, remaining, Neighbours);
        Assert.Equal(expectedSimilar.Select(e => e.Id), similar.Hits.Select(h => h.Id));
        Assert.Equal(expectedSimilar.Select(e => e.Score), similar.Hits.Select(h => h.Score), (a, b) => MathF.Abs(a - b) < 1e-4f);

        // "Find similar" by id: the stored vector is the query, the image itself is neither a hit nor a neighbour.
        var byId = await search.SearchByIdAsync(remaining[0], paths.Length);
        var stored = (await store.GetAsync(remaining[0]))!.Vector;
        var expectedById = (await BruteForceAsync(store, stored, remaining, Neighbours)).Where(e => e.Id != remaining[0]).ToList();
        Assert.Equal(expectedById.Select(e => e.Id), byId!.Hits.Select(h => h.Id));
        Assert.Equal(expectedById.Select(e => e.Score), byId.Hits.Select(h => h.Score), (a, b) => MathF.Abs(a - b) < 1e-4f);
    }

    /// <summary>
    /// DBA recomputed from scratch, independently of the code under test: every image's exact
    /// neighbours among all stored vectors (<paramref name="gallery"/>) but a copy of the query, its augmented vector, the
    /// query's cosine with it; highest first, ties in k-NN order.
    /// </summary>
    private static async Task<List<(ImageId Id, float Score)>> BruteForceAsync(IVectorStore store, float[] query, IReadOnlyList<ImageId> gallery, int neighbours)
    {
        var vectors = new Dictionary<ImageId, float[]>();
        foreach (var id in gallery)
        {
            vectors[id] = (await store.GetAsync(id))!.Vector;
        }

        var scored = new List<(ImageId Id, float Score)>();
        foreach (var id in gallery)
        {
            var self = vectors[id];
            var sum = (float[])self.Clone();
            var others = gallery.Where(o => o != id && Dot(query, vectors[o]) < DatabaseAugmentation.QueryCopyCosine);
            foreach (var (other, cosine) in others.Select(o => (o, Dot(self, vectors[o]))).OrderByDescending(p => p.Item2).Take(neighbours))
            {
                for (var d = 0; d < sum.Length; d++)
                {
                    sum[d] += Math.Max(cosine, 0) * vectors[other][d];
                }
            }

            scored.Add((id, Dot(query, Normalised(sum))));
        }

        return [.. scored.OrderByDescending(s => s.Score)];
    }

    private static float Dot(float[] a, float[] b) => a.Zip(b, (x, y) => x * y).Sum();

    private static float[] Normalised(float[] v)
    {
        var norm = MathF.Sqrt(Dot(v, v));
        return v.Select(x => x / norm).ToArray();
    }

    private static SearchHit Hit(int n, float score) => new(ImageId.FromContent(BitConverter.GetBytes(n)), score, Payload);
}
