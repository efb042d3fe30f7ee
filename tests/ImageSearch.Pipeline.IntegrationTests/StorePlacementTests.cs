using System.Net;
using ImageSearch.Contracts;
using ImageSearch.Core;
using ImageSearch.Qdrant;
using ImageSearch.Qdrant.Tests;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace ImageSearch.Pipeline.IntegrationTests;

/// <summary>
/// Where vectors are written: with the embedded store, by the process that owns the index, from the
/// ImageEmbedded messages; with Qdrant, by the ingest workers themselves, the indexer only linking paths.
/// Qdrant here is <see cref="QdrantApiDouble"/>, an in-process double of its documented REST API
/// that checks every exchange against Qdrant's OpenAPI document; not a Qdrant server.
/// </summary>
public sealed class StorePlacementTests : IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("placement-").FullName;
    private readonly QdrantApiDouble qdrant = new();

    public void Dispose()
    {
        qdrant.Dispose();
        Directory.Delete(root, recursive: true);
    }

    [Fact]
    public async Task A_worker_sharing_Qdrant_upserts_each_batch_itself_and_publishes_the_embeddings_without_vectors()
    {
        var (library, paths) = TestData.MakeLibrary(root, 3);
        await using var worker = await PipelineHost.StartAsync(PipelineRoles.Ingest, library, Path.Combine(root, "worker-db"), qdrant);
        Assert.True(worker.Services.GetRequiredService<IOptions<IngestOptions>>().Value.UpsertDirectly);
        var store = Assert.IsType<QdrantVectorStore>(worker.Services.GetRequiredService<IVectorStore>());
        await store.EnsureCollectionAsync();
        qdrant.ClearRequests();
        var embedded = await worker.CaptureAsync<ImageEmbedded>("test-embedded");

        await worker.AnnounceAsync(library, paths);
        await TestData.UntilAsync(() => embedded.Count == paths.Length, "an ImageEmbedded per file");

        // One durable upsert for the batch (the copy shares its point), then events that carry no vector.
        var upserts = PointUpserts(store.Collection);
        var upsert = Assert.Single(upserts);
        Assert.Equal("true", upsert.Query["wait"]);
        var points = upsert.Json!["points"]!.AsArray();
        var ids = paths.Select(p => TestData.IdOf(library, p)).Distinct().ToList();
        Assert.Equal(ids.Select(i => i.ToGuid()).Order(), points.Select(p => Guid.Parse(p!["id"]!.GetValue<string>())).Order());
        foreach (var (message, _) in embedded)
        {
            Assert.True(message.VectorStored);
            Assert.Empty(message.Vector);
            Assert.Equal(worker.Model.Key, message.ModelKey);
            Assert.Equal(TestData.IdOf(library, message.Path).Value, message.ImageId);
            var point = await store.GetAsync(ImageId.Parse(message.ImageId));
            Assert.NotNull(point);
            Assert.Equal(worker.Model.Dimensions, point.Vector.Length);
            Assert.Equal((message.Width, message.Height, message.ContentHash), (point.Payload.Width, point.Payload.Height, point.Payload.ContentHash));
        }

        Assert.Equal(paths.Order(StringComparer.Ordinal), embedded.Select(e => e.Message.Path).Order(StringComparer.Ordinal));
        Assert.Equal(ids.Count, await store.CountAsync());

        // Redelivery: every point is found by its content id, nothing is written again.
        qdrant.ClearRequests();
        await worker.AnnounceAsync(library, paths);
        await TestData.UntilAsync(() => embedded.Count == 2 * paths.Length, "the redelivered files");
        Assert.Empty(PointUpserts(store.Collection));
        Assert.All(embedded, e => Assert.True(e.Message.VectorStored && e.Message.Vector.Length == 0));
        Assert.Equal(ids.Count, await store.CountAsync());
        qdrant.AssertCompliant();
    }

    [Fact]
    public async Task A_worker_publishes_nothing_for_a_batch_until_Qdrant_has_stored_it()
    {
        var (library, paths) = TestData.MakeLibrary(root, 2);
        await using var worker = await PipelineHost.StartAsync(PipelineRoles.Ingest, library, Path.Combine(root, "worker-db"), qdrant);
        var store = (QdrantVectorStore)worker.Services.GetRequiredService<IVectorStore>();
        await store.EnsureCollectionAsync();
        var upsertPath = $"/collections/{store.Collection}/points";
        var refused = 0;
        var storedAt = DateTime.MaxValue;
        qdrant.Intercept = (request, _) =>
        {
            if (request.Method == "PUT" && request.Path == upsertPath)
            {
                if (Interlocked.Increment(ref refused) == 1)
                {
                    return Task.FromResult<HttpResponseMessage?>(QdrantApiDouble.ErrorResponse(HttpStatusCode.ServiceUnavailable, "overloaded"));
                }

                storedAt = DateTime.UtcNow;
            }

            return Task.FromResult<HttpResponseMessage?>(null);
        };
        var embedded = await worker.CaptureAsync<ImageEmbedded>("test-embedded");

        await worker.AnnounceAsync(library, paths);
        await TestData.UntilAsync(() => embedded.Count == paths.Length, "an ImageEmbedded per file after the retry");

        // The refused upsert failed the batch (the bus retried it); nothing was published before the retry stored it.
        Assert.Equal(2, refused);
        Assert.All(embedded, e => Assert.True(e.ReceivedAt >= storedAt));
        await Task.Delay(500);
        Assert.Equal(paths.Length, embedded.Count);
    }

    [Fact]
    public async Task The_indexer_links_the_paths_of_worker_stored_vectors_without_writing_them_again()
    {
        var (library, paths) = TestData.MakeLibrary(root, 3);
        // Two processes sharing the Qdrant (double); each has its own in-memory bus, so the worker's
        // events are handed to the query service's indexer by the test.
        await using var worker = await PipelineHost.StartAsync(PipelineRoles.Ingest, library, Path.Combine(root, "worker-db"), qdrant);
        var embedded = await worker.CaptureAsync<ImageEmbedded>("test-embedded");
        await worker.AnnounceAsync(library, paths);
        await TestData.UntilAsync(() => embedded.Count == paths.Length, "an ImageEmbedded per file");
        List<ImageEmbedded> messages = [.. embedded.Select(e => e.Message)];

        await using var query = await PipelineHost.StartAsync(PipelineRoles.Indexer | PipelineRoles.Query, library, Path.Combine(root, "query-db"), qdrant);
        Assert.False(query.Services.GetRequiredService<IOptions<IngestOptions>>().Value.UpsertDirectly);
        var store = (QdrantVectorStore)query.Services.GetRequiredService<IVectorStore>();
        await store.EnsureCollectionAsync();
        qdrant.ClearRequests();

        var again = await query.Services.GetRequiredService<LibraryIndexer>().ApplyEmbeddedAsync(messages, CancellationToken.None);

        Assert.Empty(again);
        Assert.Empty(PointUpserts(store.Collection));
        var catalog = query.Services.GetRequiredService<ICatalog>();
        foreach (var path in paths)
        {
            var entry = await catalog.GetAsync(path);
            Assert.NotNull(entry);
            Assert.Equal((FileState.Indexed, TestData.IdOf(library, path)), (entry.State, entry.Id!.Value));
        }

        Assert.Equal(paths.Length - 1, await store.CountAsync());

        // The same through the bus: applying them again (a redelivery) changes nothing.
        await query.Bus.PublishBatch(messages);
        await Task.Delay(2000);
        Assert.Empty(PointUpserts(store.Collection));
        Assert.Equal(paths.Length - 1, await store.CountAsync());
        qdrant.AssertCompliant();
    }

    [Fact]
    public async Task A_worker_stored_vector_deleted_before_its_path_is_linked_is_announced_again()
    {
        var (library, paths) = TestData.MakeLibrary(root, 1);
        await using var query = await PipelineHost.StartAsync(PipelineRoles.Indexer | PipelineRoles.Query, library, Path.Combine(root, "query-db"), qdrant);
        var announced = await query.CaptureAsync<ImageAdded>("test-added");
        var file = new FileInfo(Path.Combine(library, paths[0]));
        var id = TestData.IdOf(library, paths[0]);

        // A worker stored the point, then the last other path holding it was removed and the point deleted.
        await query.Bus.Publish(new ImageEmbedded(paths[0], id.Value, [], query.Model.Key, file.Length, 10, 10, "00", file.LastWriteTimeUtc, VectorStored: true));
        await TestData.UntilAsync(() => !announced.IsEmpty, "the file to be announced again");

        var (added, _) = Assert.Single(announced);
        Assert.Equal(new ImageAdded(paths[0], file.Length, file.LastWriteTimeUtc), added);
        Assert.Null(await query.Services.GetRequiredService<ICatalog>().GetAsync(paths[0]));
        Assert.Equal(0, await query.Services.GetRequiredService<IVectorStore>().CountAsync());
        qdrant.AssertCompliant();
    }

    [Fact]
    public async Task The_embedded_default_sends_vectors_over_the_bus_and_the_index_owner_stores_them()
    {
        var (library, paths) = TestData.MakeLibrary(root, 3);
        await using var single = await PipelineHost.StartAsync(PipelineRoles.Ingest | PipelineRoles.Indexer | PipelineRoles.Query, library, Path.Combine(root, "db"), qdrant: null);
        Assert.False(single.Services.GetRequiredService<IOptions<IngestOptions>>().Value.UpsertDirectly);
        var store = single.Services.GetRequiredService<IVectorStore>();
        Assert.IsNotType<QdrantVectorStore>(store);
        var catalog = single.Services.GetRequiredService<ICatalog>();
        var embedded = await single.CaptureAsync<ImageEmbedded>("test-embedded");

        await single.AnnounceAsync(library, paths);
        await TestData.UntilAsync(async () => (await catalog.CountsAsync()).Files == paths.Length, "every file to be cataloged");

        Assert.Equal(paths.Length, embedded.Count);
        Assert.All(embedded, e => Assert.False(e.Message.VectorStored));
        Assert.All(embedded, e => Assert.Equal(store.Dimensions, e.Message.Vector.Length));
        Assert.Equal(paths.Length - 1, await store.CountAsync());
        foreach (var path in paths)
        {
            Assert.Equal(TestData.IdOf(library, path), (await catalog.GetAsync(path))!.Id);
        }

        Assert.Empty(qdrant.Requests);
    }

    [Fact]
    public void Only_a_worker_configured_for_Qdrant_has_a_store()
    {
        using var embeddedWorker = PipelineHost.Build(PipelineRoles.Ingest, root, Path.Combine(root, "db"), qdrant: null);
        Assert.Null(embeddedWorker.Services.GetService<IVectorStore>());
        Assert.Null(embeddedWorker.Services.GetService<ICatalog>());
        Assert.False(embeddedWorker.Services.GetRequiredService<IOptions<IngestOptions>>().Value.UpsertDirectly);

        using var qdrantWorker = PipelineHost.Build(PipelineRoles.Ingest, root, Path.Combine(root, "db"), qdrant);
        Assert.IsType<QdrantVectorStore>(qdrantWorker.Services.GetService<IVectorStore>());
        Assert.Null(qdrantWorker.Services.GetService<ICatalog>());
        Assert.True(qdrantWorker.Services.GetRequiredService<IOptions<IngestOptions>>().Value.UpsertDirectly);

        // Opting out: the worker still finds stored copies in Qdrant but sends its vectors to the indexer.
        using var optedOut = PipelineHost.Build(PipelineRoles.Ingest, root, Path.Combine(root, "db"), qdrant, new Dictionary<string, string?> { ["Ingest:UpsertDirectly"] = "false" });
        Assert.False(optedOut.Services.GetRequiredService<IOptions<IngestOptions>>().Value.UpsertDirectly);
        Assert.Empty(qdrant.Requests);
    }

    [Fact]
    public async Task Direct_upserts_without_a_store_in_the_process_fail_at_start()
    {
        using var host = PipelineHost.Build(PipelineRoles.Ingest, root, Path.Combine(root, "db"), qdrant: null,
            new Dictionary<string, string?> { ["Ingest:UpsertDirectly"] = "true" });

        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Contains("UpsertDirectly", error.Message, StringComparison.Ordinal);
    }

    private List<RecordedRequest> PointUpserts(string collection) =>
        [.. qdrant.Requests.Where(r => r.Method == "PUT" && r.Path == $"/collections/{collection}/points")];
}
