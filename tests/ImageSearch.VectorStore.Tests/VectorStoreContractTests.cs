using ImageSearch.Core;

namespace ImageSearch.VectorStore.Tests;

/// <summary>
/// The behaviour every <see cref="IVectorStore"/> owes its callers, whatever the backend. A concrete
/// subclass only says how to open its store; it must not rely on anything else about it. xUnit makes a
/// new instance per test, so each test gets fresh storage from the subclass.
/// </summary>
public abstract class VectorStoreContractTests : IDisposable
{
    protected const int Dimensions = 16;

    /// <summary>
    /// Opens the store under test on this test's storage. Called again after the previous instance was
    /// disposed, it must reopen the same data.
    /// </summary>
    protected abstract IVectorStore OpenStore(int dimensions);

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases this test's storage.</summary>
    protected virtual void Dispose(bool disposing)
    {
    }

    [Fact]
    public async Task Upserted_points_can_be_read_back()
    {
        using var store = OpenStore(Dimensions);
        Assert.Equal(Dimensions, store.Dimensions);
        var records = TestData.Records(0, 20, Dimensions);
        await store.UpsertAsync(records);

        Assert.Equal(20, await store.CountAsync());
        foreach (var record in records)
        {
            var stored = await store.GetAsync(record.Id);
            Assert.NotNull(stored);
            Assert.Equal(record.Id, stored.Id);
            Assert.Equal(record.Payload, stored.Payload);
            AssertSameDirection(record.Vector, stored.Vector);
        }

        Assert.Null(await store.GetAsync(TestData.Id(999)));
    }

    [Fact]
    public async Task Search_returns_nearest_points_best_first_with_cosine_scores()
    {
        using var store = OpenStore(Dimensions);
        await store.UpsertAsync(TestData.Records(0, 60, Dimensions));

        foreach (var n in new[] { 0, 17, 42, 59 })
        {
            var query = TestData.Vector(n, Dimensions);
            foreach (var exact in new[] { false, true })
            {
                var hits = await store.SearchAsync(query, new VectorQuery(Top: 5, Exact: exact));
                Assert.Equal(5, hits.Count);
                Assert.Equal(TestData.Id(n), hits[0].Id);
                Assert.Equal(1f, hits[0].Score, 1e-4f);
                Assert.Equal(hits.Count, hits.Select(h => h.Id).Distinct().Count());
                for (var i = 0; i < hits.Count; i++)
                {
                    if (i > 0)
                    {
                        Assert.True(hits[i - 1].Score >= hits[i].Score, "hits must be ordered best first");
                    }

                    var (point, version) = TestData.Decode(hits[i].Payload);
                    Assert.Equal(TestData.Id(point), hits[i].Id);
                    Assert.Equal(TestData.Payload(point, version), hits[i].Payload);
                    var expected = TestData.Dot(TestData.Normalized(query), TestData.Normalized(TestData.Vector(point, Dimensions, version)));
                    Assert.Equal(expected, hits[i].Score, 1e-4f);
                }
            }
        }
    }

    [Fact]
    public async Task Search_returns_what_exists_when_asked_for_more()
    {
        using var store = OpenStore(Dimensions);
        Assert.Empty(await store.SearchAsync(TestData.Vector(0, Dimensions), new VectorQuery(Top: 10)));

        await store.UpsertAsync(TestData.Records(0, 3, Dimensions));
        var hits = await store.SearchAsync(TestData.Vector(0, Dimensions), new VectorQuery(Top: 10));
        Assert.Equal(3, hits.Count);
    }

    [Fact]
    public async Task Reupserting_identical_points_changes_nothing()
    {
        using var store = OpenStore(Dimensions);
        var records = TestData.Records(0, 10, Dimensions);
        await store.UpsertAsync(records);
        var before = await store.SearchAsync(TestData.Vector(3, Dimensions), new VectorQuery(Top: 10));

        await store.UpsertAsync(records);
        await store.UpsertAsync(records.Take(4).ToList());

        Assert.Equal(10, await store.CountAsync());
        var after = await store.SearchAsync(TestData.Vector(3, Dimensions), new VectorQuery(Top: 10));
        Assert.Equal(before.Select(h => h.Id), after.Select(h => h.Id));
        Assert.Equal(records[3].Payload, (await store.GetAsync(records[3].Id))!.Payload);
    }

    [Fact]
    public async Task Upserting_an_existing_id_replaces_its_vector_and_payload()
    {
        using var store = OpenStore(Dimensions);
        await store.UpsertAsync(TestData.Records(0, 30, Dimensions));
        var replacement = TestData.Record(7, Dimensions, version: 1);
        await store.UpsertAsync([replacement]);

        Assert.Equal(30, await store.CountAsync());
        var stored = await store.GetAsync(replacement.Id);
        Assert.Equal(replacement.Payload, stored!.Payload);
        AssertSameDirection(replacement.Vector, stored.Vector);

        var byNew = await store.SearchAsync(replacement.Vector, new VectorQuery(Top: 3));
        Assert.Equal(replacement.Id, byNew[0].Id);
        Assert.Equal(1f, byNew[0].Score, 1e-4f);
        Assert.Equal(replacement.Payload, byNew[0].Payload);

        // The old vector is gone: searching for it no longer finds point 7 as a perfect match.
        var byOld = await store.SearchAsync(TestData.Vector(7, Dimensions), new VectorQuery(Top: 30, Exact: true));
        var seven = Assert.Single(byOld, h => h.Id == replacement.Id);
        var expected = TestData.Dot(TestData.Normalized(TestData.Vector(7, Dimensions)), TestData.Normalized(replacement.Vector));
        Assert.Equal(expected, seven.Score, 1e-4f);
    }

    [Fact]
    public async Task Delete_removes_points_and_ignores_unknown_ids()
    {
        using var store = OpenStore(Dimensions);
        await store.UpsertAsync(TestData.Records(0, 10, Dimensions));

        var removed = await store.DeleteAsync([TestData.Id(0), TestData.Id(1), TestData.Id(999), TestData.Id(0)]);

        Assert.Equal(2, removed);
        Assert.Equal(8, await store.CountAsync());
        Assert.Null(await store.GetAsync(TestData.Id(0)));
        foreach (var exact in new[] { false, true })
        {
            var hits = await store.SearchAsync(TestData.Vector(0, Dimensions), new VectorQuery(Top: 10, Exact: exact));
            Assert.Equal(8, hits.Count);
            Assert.DoesNotContain(hits, h => h.Id == TestData.Id(0) || h.Id == TestData.Id(1));
        }

        Assert.Equal(0, await store.DeleteAsync([TestData.Id(0), TestData.Id(999)]));
        Assert.Equal(0, await store.DeleteAsync([]));
    }

    [Fact]
    public async Task A_deleted_id_can_be_upserted_again()
    {
        using var store = OpenStore(Dimensions);
        await store.UpsertAsync(TestData.Records(0, 5, Dimensions));
        await store.DeleteAsync([TestData.Id(2)]);
        var again = TestData.Record(2, Dimensions, version: 3);
        await store.UpsertAsync([again]);

        Assert.Equal(5, await store.CountAsync());
        var hits = await store.SearchAsync(again.Vector, new VectorQuery(Top: 1));
        Assert.Equal(again.Id, hits[0].Id);
        Assert.Equal(again.Payload, hits[0].Payload);
    }

    [Fact]
    public async Task Vectors_of_the_wrong_dimension_are_rejected()
    {
        using var store = OpenStore(Dimensions);
        var wrong = new VectorRecord(TestData.Id(1), TestData.Vector(1, Dimensions + 1), TestData.Payload(1));

        await Assert.ThrowsAnyAsync<ArgumentException>(() => store.UpsertAsync([TestData.Record(0, Dimensions), wrong]));
        await Assert.ThrowsAnyAsync<ArgumentException>(() => store.SearchAsync(TestData.Vector(0, Dimensions - 1), new VectorQuery()));

        // The batch was refused as a whole.
        Assert.Equal(0, await store.CountAsync());
    }

    [Fact]
    public async Task Local_features_are_kept_beside_their_points_until_deleted()
    {
        var features = (int n) => Enumerable.Range(0, 300 + n).Select(i => (byte)(i * 7 + n)).ToArray();
        var store = OpenStore(Dimensions);
        var records = TestData.Records(0, 6, Dimensions);
        await store.UpsertAsync(records.Select((r, n) => n < 4 ? r with { LocalFeatures = features(n) } : r).ToList());

        var found = await store.GetLocalFeaturesAsync([.. records.Select(r => r.Id), TestData.Id(999)]);
        Assert.Equal(records.Take(4).Select(r => r.Id).ToHashSet(), found.Keys.ToHashSet());
        Assert.Equal(features(2), found[TestData.Id(2)]);

        // Searches and reads of the point do not carry the features; a later upsert without them keeps them.
        var hits = await store.SearchAsync(TestData.Vector(1, Dimensions), new VectorQuery(Top: 3));
        Assert.Equal(TestData.Payload(1), hits[0].Payload);
        await store.UpsertAsync([TestData.Record(1, Dimensions, version: 1)]);
        Assert.Equal(features(1), (await store.GetLocalFeaturesAsync([TestData.Id(1)]))[TestData.Id(1)]);
        await store.UpsertAsync([TestData.Record(3, Dimensions, version: 1) with { LocalFeatures = features(9) }]);

        await store.DeleteAsync([TestData.Id(0)]);
        store.Dispose();

        using var reopened = OpenStore(Dimensions);
        var after = await reopened.GetLocalFeaturesAsync(records.Select(r => r.Id).ToList());
        Assert.Equal(new[] { 1, 2, 3 }.Select(TestData.Id).ToHashSet(), after.Keys.ToHashSet());
        Assert.Equal(features(9), after[TestData.Id(3)]);
        Assert.Equal(TestData.Payload(1, 1), (await reopened.GetAsync(TestData.Id(1)))!.Payload);

        // A point deleted and added again without features has none.
        await reopened.UpsertAsync([TestData.Record(0, Dimensions)]);
        Assert.Empty(await reopened.GetLocalFeaturesAsync([TestData.Id(0)]));
    }

    [Fact]
    public async Task Reopening_keeps_every_change()
    {
        var store = OpenStore(Dimensions);
        await store.UpsertAsync(TestData.Records(0, 40, Dimensions));
        await store.DeleteAsync([TestData.Id(3), TestData.Id(4), TestData.Id(5)]);
        await store.UpsertAsync([TestData.Record(10, Dimensions, version: 1), TestData.Record(11, Dimensions, version: 1)]);
        store.Dispose();

        using var reopened = OpenStore(Dimensions);
        Assert.Equal(37, await reopened.CountAsync());
        Assert.Null(await reopened.GetAsync(TestData.Id(4)));
        for (var n = 0; n < 40; n++)
        {
            if (n is 3 or 4 or 5)
            {
                continue;
            }

            var version = n is 10 or 11 ? 1 : 0;
            var stored = await reopened.GetAsync(TestData.Id(n));
            Assert.Equal(TestData.Payload(n, version), stored!.Payload);
            var hits = await reopened.SearchAsync(TestData.Vector(n, Dimensions, version), new VectorQuery(Top: 1));
            Assert.Equal(TestData.Id(n), hits[0].Id);
        }
    }

    [Fact]
    public async Task Concurrent_searches_during_writes_see_whole_points()
    {
        using var store = OpenStore(Dimensions);
        const int stable = 100;
        await store.UpsertAsync(TestData.Records(0, stable, Dimensions));
        var writing = true;

        var writer = Task.Run(async () =>
        {
            try
            {
                for (var batch = 1; batch <= 20; batch++)
                {
                    // New points, and new versions (vector + payload) of points 1000..1004.
                    var records = TestData.Records(stable + (batch * 10), 10, Dimensions);
                    records.AddRange(Enumerable.Range(1000, 5).Select(n => TestData.Record(n, Dimensions, batch)));
                    await store.UpsertAsync(records);
                    if (batch % 4 == 0)
                    {
                        await store.DeleteAsync([TestData.Id(stable + ((batch - 1) * 10))]);
                    }
                }
            }
            finally
            {
                Volatile.Write(ref writing, false);
            }
        });

        var readers = Enumerable.Range(0, 3).Select(reader => Task.Run(async () =>
        {
            var rng = new Random(reader);
            var searches = 0;
            while (Volatile.Read(ref writing) || searches < 50)
            {
                var n = rng.Next(stable);
                var query = TestData.Normalized(TestData.Vector(n, Dimensions));
                var hits = await store.SearchAsync(query, new VectorQuery(Top: 10, Exact: searches % 2 == 0));
                Assert.Equal(TestData.Id(n), hits[0].Id);
                Assert.Equal(hits.Count, hits.Select(h => h.Id).Distinct().Count());
                foreach (var hit in hits)
                {
                    // Payload and score must come from the same version of the point: a hit never
                    // mixes a new payload with an old vector or the reverse.
                    var (point, version) = TestData.Decode(hit.Payload);
                    Assert.Equal(TestData.Id(point), hit.Id);
                    var expected = TestData.Dot(query, TestData.Normalized(TestData.Vector(point, Dimensions, version)));
                    Assert.Equal(expected, hit.Score, 1e-4f);
                }

                searches++;
            }
        })).ToList();

        await Task.WhenAll(readers.Append(writer));
        Assert.Equal(stable + 200 + 5 - 5, await store.CountAsync());
        var latest = await store.GetAsync(TestData.Id(1003));
        Assert.Equal(TestData.Payload(1003, 20), latest!.Payload);
    }

    private static void AssertSameDirection(float[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        var e = TestData.Normalized(expected);
        var a = TestData.Normalized(actual);
        for (var i = 0; i < e.Length; i++)
        {
            Assert.Equal(e[i], a[i], 1e-5f);
        }
    }
}
