using System.Globalization;
using System.Net;
using System.Text.Json.Nodes;
using ImageSearch.Core;
using ImageSearch.VectorStore.Tests;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace ImageSearch.Qdrant.Tests;

/// <summary>
/// What the store sends and how it treats the collection, checked on <see cref="QdrantApiDouble"/> (a
/// double of Qdrant's documented API; every exchange is also checked against the spec excerpt).
/// </summary>
public sealed class QdrantVectorStoreTests : IDisposable
{
    private const string Manifest = "00000000-0000-0000-0000-000000000000";
    private static readonly string CollectionPath = "/collections/" + Doubles.Collection;

    private readonly QdrantApiDouble _qdrant = new();

    public void Dispose()
    {
        _qdrant.AssertCompliant();
        _qdrant.Dispose();
    }

    [Fact]
    public async Task First_use_creates_the_collection_its_path_index_and_the_manifest()
    {
        using var store = Doubles.Open(_qdrant, o =>
        {
            o.M = 8;
            o.EfConstruct = 64;
            o.OnDiskPayload = true;
        });
        Assert.Equal("imagesearch_test_1", store.Collection);

        Assert.Equal(0, await store.CountAsync());

        Assert.Equal(
        [
            $"GET {CollectionPath}",
            $"PUT {CollectionPath}",
            $"PUT {CollectionPath}/index?wait=true",
            $"PUT {CollectionPath}/points?wait=true",
            $"POST {CollectionPath}/points/count",
        ], _qdrant.Calls());
        var requests = _qdrant.Requests;
        AssertJson("""{"vectors":{"size":16,"distance":"Cosine"},"hnsw_config":{"m":8,"ef_construct":64},"on_disk_payload":true}""", requests[1].Json);
        AssertJson("""{"field_name":"path","field_schema":"keyword"}""", requests[2].Json);
        var manifest = requests[3].Json!["points"]!.AsArray().Single()!;
        Assert.Equal(Manifest, manifest["id"]!.GetValue<string>());
        AssertJson("""{"model_key":"test@1","dimensions":16,"manifest_format":1}""", manifest["payload"]);
        AssertJson($$"""{"filter":{"must_not":[{"has_id":["{{Manifest}}"]}]},"exact":true}""", requests[4].Json);

        var (size, distance, m, efConstruct, onDiskPayload, indexes) = _qdrant.Describe(Doubles.Collection);
        Assert.Equal((16, "Cosine", 8, 64, true), (size, distance, m, efConstruct, onDiskPayload));
        Assert.Equal("keyword", indexes["path"]);

        // Checked once per instance.
        _qdrant.ClearRequests();
        await store.CountAsync();
        Assert.Equal([$"POST {CollectionPath}/points/count"], _qdrant.Calls());
    }

    [Fact]
    public async Task An_existing_collection_of_the_model_is_used_as_it_is()
    {
        using (var first = Doubles.Open(_qdrant))
        {
            await first.UpsertAsync(TestData.Records(0, 3, Doubles.Dimensions));
        }

        _qdrant.ClearRequests();
        using var second = Doubles.Open(_qdrant, o => o.M = 32);
        Assert.Equal(3, await second.CountAsync());
        Assert.Equal(
        [
            $"GET {CollectionPath}",
            $"POST {CollectionPath}/points",
            $"POST {CollectionPath}/points/count",
        ], _qdrant.Calls());
        AssertJson($$"""{"ids":["{{Manifest}}"],"with_payload":true,"with_vector":false}""", _qdrant.Requests[1].Json);
        Assert.Equal(16, _qdrant.Describe(Doubles.Collection).M);
    }

    [Fact]
    public async Task An_empty_collection_made_elsewhere_is_adopted()
    {
        _qdrant.AddCollection(Doubles.Collection, Doubles.Dimensions);
        using var store = Doubles.Open(_qdrant);

        await store.EnsureCollectionAsync();

        Assert.Equal(
        [
            $"GET {CollectionPath}",
            $"PUT {CollectionPath}/index?wait=true",
            $"POST {CollectionPath}/points",
            $"POST {CollectionPath}/points/count",
            $"PUT {CollectionPath}/points?wait=true",
        ], _qdrant.Calls());
        AssertJson("""{"exact":true}""", _qdrant.Requests[3].Json);
        Assert.Contains(Manifest, _qdrant.Points(Doubles.Collection).Keys);
    }

    [Fact]
    public async Task A_collection_with_another_vector_size_is_refused()
    {
        _qdrant.AddCollection(Doubles.Collection, 8);
        using var store = Doubles.Open(_qdrant);

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => store.UpsertAsync(TestData.Records(0, 1, Doubles.Dimensions)));

        Assert.Contains("8-dimensional", error.Message, StringComparison.Ordinal);
        Assert.Contains("test@1 makes 16", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(_qdrant.Requests, r => r.Method != "GET");
    }

    [Fact]
    public async Task A_collection_with_another_distance_is_refused()
    {
        _qdrant.AddCollection(Doubles.Collection, Doubles.Dimensions, "Dot");
        using var store = Doubles.Open(_qdrant);

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => store.CountAsync());

        Assert.Contains("distance Dot", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_collection_with_named_vectors_is_refused()
    {
        _qdrant.AddCollection(Doubles.Collection, Doubles.Dimensions, namedVectors: true);
        using var store = Doubles.Open(_qdrant);

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => store.CountAsync());

        Assert.Contains("unnamed vector", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_collection_of_another_model_is_refused()
    {
        using (var other = Doubles.Open(_qdrant, o => o.Collection = "shared", new EmbeddingModelInfo("other", "2", Doubles.Dimensions, 8, 8)))
        {
            await other.UpsertAsync(TestData.Records(0, 2, Doubles.Dimensions));
        }

        using var store = Doubles.Open(_qdrant, o => o.Collection = "shared");
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => store.SearchAsync(TestData.Vector(0, Doubles.Dimensions), new VectorQuery()));

        Assert.Contains("model other@2", error.Message, StringComparison.Ordinal);
        Assert.Contains("not test@1", error.Message, StringComparison.Ordinal);
        Assert.Equal(3, _qdrant.Points("shared").Count);
    }

    [Fact]
    public async Task A_non_empty_collection_without_manifest_is_refused()
    {
        _qdrant.AddCollection(Doubles.Collection, Doubles.Dimensions);
        _qdrant.AddPoint(Doubles.Collection, JsonValue.Create(7)!, TestData.Vector(7, Doubles.Dimensions), new JsonObject { ["title"] = "foreign" });
        using var store = Doubles.Open(_qdrant);

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => store.CountAsync());

        Assert.Contains("holds 1 points but no ImageSearch manifest", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(_qdrant.Requests, r => r.Method == "PUT" && r.Path.EndsWith("/points", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Upserts_are_validated_normalised_deduplicated_and_batched_with_wait()
    {
        using var store = Doubles.Open(_qdrant, o => o.UpsertBatchSize = 4);
        await store.EnsureCollectionAsync();
        _qdrant.ClearRequests();
        var records = TestData.Records(0, 10, Doubles.Dimensions);
        records.Add(TestData.Record(2, Doubles.Dimensions, version: 1));

        await store.UpsertAsync(records);

        // Records without local features: their stored ones are fetched first (an upsert replaces
        // the whole payload), in batches of the same size, only the features field.
        var carried = _qdrant.Requests.Where(r => r.Method == "POST").ToList();
        Assert.All(carried, r => Assert.Equal($"POST {CollectionPath}/points", r.ToString()));
        Assert.All(carried, r => AssertJson("""{"include":["local_features"]}""", r.Json!["with_payload"]));
        Assert.Equal(10, carried.Sum(r => r.Json!["ids"]!.AsArray().Count));
        var upserts = _qdrant.Requests.Where(r => r.Method != "POST").ToList();
        Assert.All(upserts, r => Assert.Equal($"PUT {CollectionPath}/points?wait=true", r.ToString()));
        Assert.Equal([4, 4, 2], upserts.Select(r => r.Json!["points"]!.AsArray().Count));
        var sent = upserts.SelectMany(r => r.Json!["points"]!.AsArray()).Select(p => p!.AsObject()).ToList();
        Assert.Equal(10, sent.Select(p => p["id"]!.GetValue<string>()).Distinct().Count());
        foreach (var point in sent)
        {
            var vector = point["vector"]!.AsArray().Select(x => x!.GetValue<double>()).ToArray();
            Assert.Equal(1, Math.Sqrt(vector.Sum(x => x * x)), 5);
            Assert.Equal(["path", "size_bytes", "width", "height", "content_hash", "added_at"], point["payload"]!.AsObject().Select(p => p.Key));
        }

        var two = sent.Single(p => p["id"]!.GetValue<string>() == TestData.Id(2).ToGuid().ToString());
        var expected = TestData.Payload(2, version: 1);
        Assert.Equal(expected.Path, two["payload"]!["path"]!.GetValue<string>());
        Assert.Equal(expected.AddedAt, DateTimeOffset.Parse(two["payload"]!["added_at"]!.GetValue<string>(), CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task Invalid_vectors_are_refused_before_anything_is_sent()
    {
        using var store = Doubles.Open(_qdrant);
        var zero = new VectorRecord(TestData.Id(1), new float[Doubles.Dimensions], TestData.Payload(1));
        var infinite = TestData.Record(2, Doubles.Dimensions);
        infinite.Vector[3] = float.PositiveInfinity;

        await Assert.ThrowsAsync<ArgumentException>(() => store.UpsertAsync([TestData.Record(0, Doubles.Dimensions), zero]));
        await Assert.ThrowsAsync<ArgumentException>(() => store.UpsertAsync([infinite]));
        await Assert.ThrowsAsync<ArgumentException>(() => store.UpsertAsync([new VectorRecord(ImageId.Parse(new string('0', 32)), TestData.Vector(0, Doubles.Dimensions), TestData.Payload(0))]));
        await Assert.ThrowsAsync<ArgumentException>(() => store.SearchAsync(new float[Doubles.Dimensions], new VectorQuery()));

        Assert.Empty(_qdrant.Requests);
    }

    [Fact]
    public async Task Search_sends_the_documented_parameters()
    {
        using var store = Doubles.Open(_qdrant, o => o.EfSearch = 99);
        await store.UpsertAsync(TestData.Records(0, 5, Doubles.Dimensions));
        _qdrant.ClearRequests();
        var query = TestData.Vector(1, Doubles.Dimensions);

        var hits = await store.SearchAsync(query, new VectorQuery(Top: 3));
        await store.SearchAsync(query, new VectorQuery(Top: 2, Exact: true, Ef: 7));

        Assert.Equal(TestData.Id(1), hits[0].Id);
        Assert.Equal(TestData.Payload(1), hits[0].Payload);
        var (first, second) = (_qdrant.Requests[0], _qdrant.Requests[1]);
        Assert.Equal($"POST {CollectionPath}/points/search", first.ToString());
        var body = first.Json!.AsObject();
        Assert.Equal(["vector", "limit", "filter", "params", "with_payload"], body.Select(p => p.Key));
        Assert.Equal(3, body["limit"]!.GetValue<int>());
        AssertJson("""{"exclude":["local_features"]}""", body["with_payload"]);
        AssertJson($$"""{"must_not":[{"has_id":["{{Manifest}}"]}]}""", body["filter"]);
        AssertJson("""{"hnsw_ef":99,"exact":false}""", body["params"]);
        AssertJson("""{"hnsw_ef":7,"exact":true}""", second.Json!["params"]);
        var sent = body["vector"]!.AsArray().Select(x => x!.GetValue<float>()).ToArray();
        Assert.Equal(TestData.Normalized(query), sent);
    }

    [Fact]
    public async Task Path_filters_become_match_any_conditions_on_path()
    {
        using var store = Doubles.Open(_qdrant);
        await store.UpsertAsync(TestData.Records(0, 10, Doubles.Dimensions));
        _qdrant.ClearRequests();
        var query = TestData.Vector(3, Doubles.Dimensions);
        var (five, six, three) = (TestData.Payload(5).Path, TestData.Payload(6).Path, TestData.Payload(3).Path);

        var only = await store.SearchAsync(query, new VectorQuery(Top: 10), new QdrantPathFilter { AnyOf = [five, six] });
        var without = await store.SearchAsync(query, new VectorQuery(Top: 10), new QdrantPathFilter { NoneOf = [three] });
        var nothing = await store.SearchAsync(query, new VectorQuery(Top: 10), new QdrantPathFilter { AnyOf = [] });

        Assert.Equal(new[] { TestData.Id(5), TestData.Id(6) }.Select(id => id.Value).Order(), only.Select(h => h.Id.Value).Order());
        Assert.Equal(9, without.Count);
        Assert.DoesNotContain(without, h => h.Id == TestData.Id(3));
        Assert.Empty(nothing);
        Assert.Equal(2, _qdrant.Requests.Count);
        AssertJson($$$"""{"must":[{"key":"path","match":{"any":["{{{five}}}","{{{six}}}"]}}],"must_not":[{"has_id":["{{{Manifest}}}"]}]}""", _qdrant.Requests[0].Json!["filter"]);
        AssertJson($$$"""{"must_not":[{"has_id":["{{{Manifest}}}"]},{"key":"path","match":{"any":["{{{three}}}"]}}]}""", _qdrant.Requests[1].Json!["filter"]);
    }

    [Fact]
    public async Task Delete_asks_which_ids_exist_then_deletes_those()
    {
        using var store = Doubles.Open(_qdrant);
        await store.UpsertAsync(TestData.Records(0, 5, Doubles.Dimensions));
        _qdrant.ClearRequests();
        var (zero, unknown) = (TestData.Id(0).ToGuid().ToString(), TestData.Id(999).ToGuid().ToString());

        Assert.Equal(1, await store.DeleteAsync([TestData.Id(0), TestData.Id(999)]));
        Assert.Equal(0, await store.DeleteAsync([TestData.Id(999)]));

        Assert.Equal(
        [
            $"POST {CollectionPath}/points",
            $"POST {CollectionPath}/points/delete?wait=true",
            $"POST {CollectionPath}/points",
        ], _qdrant.Calls());
        AssertJson($$"""{"ids":["{{zero}}","{{unknown}}"],"with_payload":false,"with_vector":false}""", _qdrant.Requests[0].Json);
        AssertJson($$"""{"points":["{{zero}}"]}""", _qdrant.Requests[1].Json);
    }

    [Fact]
    public async Task The_manifest_point_never_shows()
    {
        using var store = Doubles.Open(_qdrant);
        await store.UpsertAsync(TestData.Records(0, 3, Doubles.Dimensions));
        var manifestVector = new float[Doubles.Dimensions];
        manifestVector[0] = 1;
        var manifestId = ImageId.Parse(new string('0', 32));

        var hits = await store.SearchAsync(manifestVector, new VectorQuery(Top: 10, Exact: true));

        Assert.Equal(3, hits.Count);
        Assert.Equal(3, await store.CountAsync());
        Assert.Null(await store.GetAsync(manifestId));
        Assert.Equal(0, await store.DeleteAsync([manifestId]));
        Assert.Equal(4, _qdrant.Points(Doubles.Collection).Count);
    }

    [Fact]
    public async Task Get_returns_the_stored_unit_vector_and_payload()
    {
        using var store = Doubles.Open(_qdrant);
        var record = TestData.Record(4, Doubles.Dimensions);
        await store.UpsertAsync([record]);
        _qdrant.ClearRequests();

        var stored = await store.GetAsync(record.Id);

        Assert.Equal(record.Payload, stored!.Payload);
        Assert.Equal(TestData.Normalized(record.Vector), stored.Vector);
        AssertJson($$"""{"ids":["{{record.Id.ToGuid()}}"],"with_payload":{"exclude":["local_features"]},"with_vector":true}""", _qdrant.Requests.Single().Json);
    }

    [Fact]
    public async Task The_api_key_goes_with_every_request()
    {
        using var qdrant = new QdrantApiDouble(apiKey: "s3cret");
        using var store = Doubles.Open(qdrant, o => o.ApiKey = "s3cret");

        await store.UpsertAsync(TestData.Records(0, 2, Doubles.Dimensions));
        await store.SearchAsync(TestData.Vector(0, Doubles.Dimensions), new VectorQuery());
        await store.CheckReadyAsync();

        Assert.All(qdrant.Requests, r => Assert.Equal("s3cret", r.ApiKey));
        qdrant.AssertCompliant();
    }

    [Fact]
    public async Task A_failed_collection_check_is_tried_again_by_the_next_call()
    {
        var failures = 1;
        _qdrant.Intercept = (request, _) => Task.FromResult(request.Method == "GET" && Interlocked.Decrement(ref failures) >= 0
            ? QdrantApiDouble.ErrorResponse(HttpStatusCode.ServiceUnavailable, "starting")
            : null);
        using var store = Doubles.Open(_qdrant);

        await Assert.ThrowsAsync<QdrantUnavailableException>(() => store.CountAsync());
        Assert.Equal(0, await store.CountAsync());

        Assert.Equal(2, _qdrant.Requests.Count(r => r.Method == "GET"));
    }

    [Fact]
    public async Task An_acknowledged_write_counts_as_durable()
    {
        using var store = Doubles.Open(_qdrant);
        await store.EnsureCollectionAsync();
        _qdrant.Intercept = (request, _) => Task.FromResult(request.Method == "PUT"
            ? new HttpResponseMessage(HttpStatusCode.OK) { Content = new StringContent("""{"result":{"operation_id":9,"status":"acknowledged"},"status":"ok","time":0.001}""") }
            : null);

        await store.UpsertAsync(TestData.Records(0, 1, Doubles.Dimensions));
    }

    [Fact]
    public async Task The_health_check_follows_readyz_and_the_collection()
    {
        using var store = Doubles.Open(_qdrant);
        var check = new QdrantHealthCheck(store);

        var healthy = await check.CheckHealthAsync(new HealthCheckContext());
        Assert.Equal(HealthStatus.Healthy, healthy.Status);
        Assert.Contains($"GET /readyz", _qdrant.Calls());

        _qdrant.Intercept = (request, _) => Task.FromResult(request.Path == "/readyz"
            ? new HttpResponseMessage(HttpStatusCode.ServiceUnavailable) { Content = new StringContent("some shards are not ready") }
            : null);
        var unhealthy = await check.CheckHealthAsync(new HealthCheckContext());
        Assert.Equal(HealthStatus.Unhealthy, unhealthy.Status);
        Assert.IsType<QdrantUnavailableException>(unhealthy.Exception);
        Assert.Contains("some shards are not ready", unhealthy.Description, StringComparison.Ordinal);
    }

    private static void AssertJson(string expected, JsonNode? actual) =>
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(expected), actual), $"Expected {expected}\nActual   {actual?.ToJsonString()}");
}
