using ImageSearch.Core;
using Microsoft.Extensions.Options;

namespace ImageSearch.VectorStore.Tests;

/// <summary>What is specific to the embedded store: manifest, folder lock, snapshots, recovery.</summary>
public sealed class EmbeddedVectorStoreTests : IDisposable
{
    private const int Dim = 12;
    private static readonly EmbeddingModelInfo Model = new("test", "1", Dim, 8, 8);
    private readonly TempDirectory _temp = new();

    public enum Damage
    {
        FlipByte,
        Truncate,
        DeleteSnapshot,
        GarbageMeta,
        MetaForOtherDimension,
        MetaAheadOfDatabase,
    }

    public void Dispose() => _temp.Dispose();

    [Fact]
    public async Task Opening_a_folder_of_another_model_or_dimension_is_refused()
    {
        using (var store = Open())
        {
            await store.UpsertAsync(TestData.Records(0, 3, Dim));
        }

        var otherModel = Assert.Throws<InvalidOperationException>(() => Open(model: new EmbeddingModelInfo("other", "2", Dim, 8, 8)));
        Assert.Contains("test@1", otherModel.Message, StringComparison.Ordinal);
        Assert.Contains("other@2", otherModel.Message, StringComparison.Ordinal);
        Assert.Throws<InvalidOperationException>(() => Open(model: new EmbeddingModelInfo("test", "1", Dim + 1, 8, 8)));

        // Refusing must not have damaged anything.
        using var again = Open();
        Assert.Equal(3, await again.CountAsync());
    }

    [Fact]
    public async Task Whether_a_folder_holds_points_is_read_without_opening_the_store()
    {
        Assert.False(EmbeddedVectorStore.HoldsPoints(_temp.Path)); // no store yet
        using var store = Open();
        Assert.False(EmbeddedVectorStore.HoldsPoints(_temp.Path)); // an empty store, held open by this process
        await store.UpsertAsync(TestData.Records(0, 2, Dim));
        Assert.True(EmbeddedVectorStore.HoldsPoints(_temp.Path));
        await store.DeleteAsync([TestData.Id(0), TestData.Id(1)]);
        Assert.False(EmbeddedVectorStore.HoldsPoints(_temp.Path));
    }

    [Fact]
    public void A_database_without_manifest_is_refused()
    {
        Open().Dispose();
        File.Delete(Path.Combine(_temp.Path, "manifest.json"));
        Assert.Throws<InvalidOperationException>(() => Open());
    }

    [Fact]
    public void A_folder_can_be_open_only_once()
    {
        using var store = Open();
        var error = Assert.Throws<InvalidOperationException>(() => Open());
        Assert.Contains("already open", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Invalid_options_are_rejected()
    {
        var options = new EmbeddedStoreOptions { Directory = "", M = 1, EfSearch = 0 };
        Assert.Equal(3, options.Validate().Count);
        Assert.Throws<OptionsValidationException>(() => new EmbeddedVectorStore(options, Model));
    }

    [Fact]
    public async Task Identical_reupsert_writes_nothing_and_later_duplicates_in_a_batch_win()
    {
        using var store = Open();
        await store.UpsertAsync(TestData.Records(0, 5, Dim));
        var seq = store.LastSeq;
        await store.UpsertAsync(TestData.Records(0, 5, Dim));
        Assert.Equal(seq, store.LastSeq);

        await store.UpsertAsync([TestData.Record(9, Dim, 1), TestData.Record(9, Dim, 2)]);
        Assert.Equal(seq + 1, store.LastSeq);
        Assert.Equal(TestData.Payload(9, 2), (await store.GetAsync(TestData.Id(9)))!.Payload);
    }

    [Fact]
    public async Task Copy_taken_while_open_recovers_every_committed_point_from_snapshot_and_replay()
    {
        var live = _temp.Sub("live");
        var store = Open(live, snapshotEvery: 50);
        for (var batch = 0; batch < 13; batch++)
        {
            await store.UpsertAsync(TestData.Records(batch * 10, 10, Dim));
        }

        // After the snapshot at seq 100: new versions of pre- and post-snapshot points, and deletes of
        // pre-snapshot points, a post-snapshot point and a point inserted after the snapshot.
        await store.UpsertAsync([TestData.Record(5, Dim, 1), TestData.Record(120, Dim, 1)]);
        await store.DeleteAsync([TestData.Id(1), TestData.Id(2), TestData.Id(125)]);
        await store.UpsertAsync([TestData.Record(500, Dim)]);
        await store.DeleteAsync([TestData.Id(500)]);

        // "Crash": copy the folder as it is on disk while the store is still open and never disposed.
        var crashed = _temp.Sub("crashed");
        CopyFolder(live, crashed);

        using var recovered = Open(crashed, snapshotEvery: 50);
        Assert.False(recovered.OpenInfo.Rebuilt, recovered.OpenInfo.RebuildReason);
        Assert.Equal(100, recovered.OpenInfo.SnapshotSeq);
        // Rows newer than the snapshot: 100..129 except the deleted 125, plus the new version of 5
        // (500 came and went after the snapshot, so it is neither replayed nor deleted).
        Assert.Equal(30, recovered.OpenInfo.ReplayedUpserts);
        Assert.Equal(2, recovered.OpenInfo.ReplayedDeletes);

        var expected = Enumerable.Range(0, 130).Where(n => n is not (1 or 2 or 125)).ToList();
        await AssertHolds(recovered, expected, n => n is 5 or 120 ? 1 : 0);
        store.Dispose();
    }

    [Theory]
    [InlineData(Damage.FlipByte)]
    [InlineData(Damage.Truncate)]
    [InlineData(Damage.DeleteSnapshot)]
    [InlineData(Damage.GarbageMeta)]
    [InlineData(Damage.MetaForOtherDimension)]
    [InlineData(Damage.MetaAheadOfDatabase)]
    public async Task A_damaged_snapshot_is_discarded_and_the_graph_rebuilt(Damage damage)
    {
        using (var store = Open(snapshotEvery: 1_000_000))
        {
            await store.UpsertAsync(TestData.Records(0, 60, Dim));
            await store.DeleteAsync([TestData.Id(7)]);
        }

        var snapshot = Directory.GetFiles(_temp.Path, "hnsw-*.bin").Single();
        var meta = Path.Combine(_temp.Path, "hnsw.meta.json");
        switch (damage)
        {
            case Damage.FlipByte:
                var bytes = File.ReadAllBytes(snapshot);
                bytes[bytes.Length / 2] ^= 0x40;
                File.WriteAllBytes(snapshot, bytes);
                break;
            case Damage.Truncate:
                using (var stream = new FileStream(snapshot, FileMode.Open))
                {
                    stream.SetLength(stream.Length - 100);
                }

                break;
            case Damage.DeleteSnapshot:
                File.Delete(snapshot);
                break;
            case Damage.GarbageMeta:
                File.WriteAllText(meta, "{ not json");
                break;
            case Damage.MetaForOtherDimension:
                File.WriteAllText(meta, File.ReadAllText(meta).Replace($"\"dimensions\": {Dim}", "\"dimensions\": 99", StringComparison.Ordinal));
                break;
            case Damage.MetaAheadOfDatabase:
                File.WriteAllText(meta, File.ReadAllText(meta).Replace("\"seq\": 61", "\"seq\": 62", StringComparison.Ordinal));
                break;
        }

        using var reopened = Open();
        Assert.True(reopened.OpenInfo.Rebuilt);
        await AssertHolds(reopened, Enumerable.Range(0, 60).Where(n => n != 7).ToList(), _ => 0);

        // The rebuilt graph was saved right away: the next open uses it.
        reopened.Dispose();
        using var third = Open();
        Assert.False(third.OpenInfo.Rebuilt, third.OpenInfo.RebuildReason);
    }

    [Fact]
    public async Task Dispose_saves_a_snapshot_so_reopening_replays_nothing_and_leftovers_are_removed()
    {
        using (var store = Open(snapshotEvery: 1_000_000))
        {
            await store.UpsertAsync(TestData.Records(0, 25, Dim));
        }

        // Debris of a crash in the middle of saving a snapshot.
        File.WriteAllText(Path.Combine(_temp.Path, "hnsw-00000000000000000099.bin.tmp"), "partial");
        File.WriteAllText(Path.Combine(_temp.Path, "hnsw-00000000000000000001.bin"), "superseded");

        using var reopened = Open();
        Assert.Equal(new StoreOpenInfo(25, 25, 0, 0, null, reopened.OpenInfo.Elapsed), reopened.OpenInfo);
        Assert.Single(Directory.GetFiles(_temp.Path, "hnsw-*"));
        Assert.Empty(Directory.GetFiles(_temp.Path, "*.tmp"));
    }

    [Fact]
    public async Task The_graph_grows_past_its_initial_capacity_and_large_rebuilds_work()
    {
        using (var store = Open(dimensions: 4, snapshotEvery: 1000))
        {
            await store.UpsertAsync(TestData.Records(0, 1500, 4));
            await store.UpsertAsync(TestData.Records(1500, 3500, 4));
            Assert.Equal(5000, store.GraphLiveCount);
        }

        using (var reopened = Open(dimensions: 4))
        {
            Assert.False(reopened.OpenInfo.Rebuilt);
            Assert.Equal(5000, reopened.GraphLiveCount);
        }

        // Big enough for the multi-threaded rebuild.
        File.Delete(Path.Combine(_temp.Path, "hnsw.meta.json"));
        using var rebuilt = Open(dimensions: 4);
        Assert.True(rebuilt.OpenInfo.Rebuilt);
        Assert.Equal(5000, rebuilt.GraphLiveCount);
        foreach (var n in new[] { 0, 2500, 4999 })
        {
            Assert.Equal(TestData.Id(n), (await rebuilt.SearchAsync(TestData.Vector(n, 4), new VectorQuery(Top: 1)))[0].Id);
        }
    }

    [Fact]
    public async Task A_payload_only_change_is_stored_and_replayed_without_touching_the_vector()
    {
        var live = _temp.Sub("live");
        var store = Open(live, snapshotEvery: 10);
        await store.UpsertAsync(TestData.Records(0, 10, Dim)); // snapshot at seq 10
        var moved = TestData.Record(4, Dim) with { Payload = TestData.Payload(4, version: 9) };
        await store.UpsertAsync([moved]);
        Assert.Equal(11, store.LastSeq);
        Assert.Equal(moved.Payload, (await store.SearchAsync(moved.Vector, new VectorQuery(Top: 1)))[0].Payload);

        CopyFolder(live, _temp.Sub("copy"));
        using var recovered = Open(_temp.Sub("copy"));
        Assert.Equal((10L, 1), (recovered.OpenInfo.SnapshotSeq, recovered.OpenInfo.ReplayedUpserts));
        var hit = (await recovered.SearchAsync(moved.Vector, new VectorQuery(Top: 1)))[0];
        Assert.Equal((moved.Id, moved.Payload), (hit.Id, hit.Payload));
        Assert.Equal(1f, hit.Score, 1e-5f);
        store.Dispose();
    }

    [Fact]
    public async Task A_graph_mostly_made_of_deleted_points_is_compacted_on_open()
    {
        using (var store = Open(dimensions: 4))
        {
            await store.UpsertAsync(TestData.Records(0, 1200, 4));
            await store.DeleteAsync(Enumerable.Range(0, 1100).Select(TestData.Id).ToList());
        }

        using var reopened = Open(dimensions: 4);
        Assert.Contains("compacting", reopened.OpenInfo.RebuildReason, StringComparison.Ordinal);
        Assert.Equal(100, reopened.GraphLiveCount);
        Assert.Equal(100, await reopened.CountAsync());
    }

    [Fact]
    public async Task An_int8_graph_finds_the_exact_neighbours_with_exact_scores()
    {
        const int dim = 64;
        var points = TestData.Clustered(3050, dim, clusters: 40, spread: 0.6, seed: 11);
        var records = Enumerable.Range(0, 3000).Select(n => new VectorRecord(TestData.Id(n), points[n], TestData.Payload(n))).ToList();
        using var store = Open(dimensions: dim, graphVectors: HnswVectorFormat.Int8);
        await store.UpsertAsync(records);

        var hits = 0;
        foreach (var query in points[3000..])
        {
            var exact = await store.SearchAsync(query, new VectorQuery(Top: 10, Exact: true));
            var graph = await store.SearchAsync(query, new VectorQuery(Top: 10));
            hits += graph.Select(h => h.Id).Intersect(exact.Select(h => h.Id)).Count();

            // Rescored: every score is the exact cosine, best first.
            foreach (var hit in graph)
            {
                var n = TestData.Decode(hit.Payload).N;
                Assert.Equal(TestData.Dot(TestData.Normalized(query), TestData.Normalized(points[n])), hit.Score, 1e-5f);
            }

            Assert.Equal(graph.OrderByDescending(h => h.Score).Select(h => h.Id), graph.Select(h => h.Id));
        }

        Assert.True(hits / 500.0 >= 0.95, $"recall@10 {hits / 500.0:F3}");
    }

    [Fact]
    public async Task Changing_the_graph_vector_format_rebuilds_the_graph_once()
    {
        using (var store = Open())
        {
            await store.UpsertAsync(TestData.Records(0, 30, Dim));
        }

        using (var int8 = Open(graphVectors: HnswVectorFormat.Int8))
        {
            Assert.True(int8.OpenInfo.Rebuilt);
            Assert.Contains("Int8", int8.OpenInfo.RebuildReason, StringComparison.Ordinal);
            Assert.Equal(TestData.Id(17), (await int8.SearchAsync(TestData.Vector(17, Dim), new VectorQuery(Top: 1)))[0].Id);
        }

        using (var again = Open(graphVectors: HnswVectorFormat.Int8))
        {
            Assert.False(again.OpenInfo.Rebuilt, again.OpenInfo.RebuildReason);
        }

        using var back = Open();
        Assert.True(back.OpenInfo.Rebuilt);
        Assert.Equal(30, back.GraphLiveCount);
    }

    [Fact]
    public async Task A_snapshot_meta_without_a_vector_format_is_read_as_float32()
    {
        using (var store = Open())
        {
            await store.UpsertAsync(TestData.Records(0, 10, Dim));
        }

        // What stores wrote before int8 graphs existed.
        var metaPath = Path.Combine(_temp.Path, "hnsw.meta.json");
        var meta = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(metaPath))!.AsObject();
        Assert.True(meta.Remove("vectors"));
        File.WriteAllText(metaPath, meta.ToJsonString());

        using var reopened = Open();
        Assert.False(reopened.OpenInfo.Rebuilt, reopened.OpenInfo.RebuildReason);
    }

    [Fact]
    public async Task Queries_are_validated()
    {
        using var store = Open();
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => store.SearchAsync(TestData.Vector(0, Dim), new VectorQuery(Top: 0)));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => store.SearchAsync(TestData.Vector(0, Dim), new VectorQuery(Ef: -1)));
        await Assert.ThrowsAsync<ArgumentException>(() => store.SearchAsync(new float[Dim], new VectorQuery()));
        var nan = TestData.Vector(0, Dim);
        nan[3] = float.NaN;
        await Assert.ThrowsAsync<ArgumentException>(() => store.UpsertAsync([new VectorRecord(TestData.Id(0), nan, TestData.Payload(0))]));
    }

    [Fact]
    public async Task Operations_after_dispose_throw()
    {
        var store = Open();
        store.Dispose();
        store.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => store.CountAsync());
        await Assert.ThrowsAsync<ObjectDisposedException>(() => store.UpsertAsync(TestData.Records(0, 1, Dim)));
    }

    /// <summary>Exactly <paramref name="expected"/> points, each once, with the right version, findable both ways.</summary>
    private static async Task AssertHolds(EmbeddedVectorStore store, List<int> expected, Func<int, int> version)
    {
        Assert.Equal(expected.Count, await store.CountAsync());
        Assert.Equal(expected.Count, store.GraphLiveCount);
        foreach (var n in expected)
        {
            var record = await store.GetAsync(TestData.Id(n));
            Assert.Equal(TestData.Payload(n, version(n)), record!.Payload);
            var query = TestData.Vector(n, Dim, version(n));
            foreach (var exact in new[] { false, true })
            {
                var hits = await store.SearchAsync(query, new VectorQuery(Top: 10, Exact: exact));
                Assert.Equal(TestData.Id(n), hits[0].Id);
                Assert.Equal(hits.Count, hits.Select(h => h.Id).Distinct().Count());
            }
        }

        var all = await store.SearchAsync(TestData.Vector(0, Dim), new VectorQuery(Top: expected.Count + 50, Ef: 500));
        Assert.Equal(expected.Select(n => TestData.Id(n).Value).Order(StringComparer.Ordinal), all.Select(h => h.Id.Value).Order(StringComparer.Ordinal));
    }

    /// <summary>
    /// Copies what a crash would leave on disk: not the SQLite shared-memory index (rebuilt from the
    /// WAL) nor the lock file (a lock dies with its process).
    /// </summary>
    private static void CopyFolder(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from))
        {
            if (!file.EndsWith("-shm", StringComparison.Ordinal) && Path.GetFileName(file) != "store.lock")
            {
                File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
            }
        }
    }

    private EmbeddedVectorStore Open(string? directory = null, EmbeddingModelInfo? model = null, int? dimensions = null, int snapshotEvery = 1000,
        HnswVectorFormat graphVectors = HnswVectorFormat.Float32) =>
        new(
            new EmbeddedStoreOptions { Directory = directory ?? _temp.Path, ExactThreshold = 0, SnapshotEvery = snapshotEvery, GraphVectors = graphVectors },
            model ?? (dimensions is { } d ? new EmbeddingModelInfo("test", "1", d, 8, 8) : Model));
}
