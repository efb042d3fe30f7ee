using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;

namespace ImageSearch.Qdrant.Tests;

/// <summary>One request as the double received it.</summary>
internal sealed record RecordedRequest(
    string Method, string Path, IReadOnlyDictionary<string, string> Query, string? ContentType, string? Body, string? ApiKey)
{
    /// <summary>The body parsed as JSON (null when there is none).</summary>
    public JsonNode? Json => string.IsNullOrEmpty(Body) ? null : JsonNode.Parse(Body);

    public override string ToString() => $"{Method} {Path}{(Query.Count == 0 ? "" : "?" + string.Join('&', Query.Select(q => $"{q.Key}={q.Value}")))}";
}

/// <summary>
/// A TEST DOUBLE of Qdrant's documented REST API, not Qdrant: an <see cref="HttpMessageHandler"/> that
/// answers in-process. Every request is checked against the excerpt of Qdrant's OpenAPI document in
/// Fixtures/ (method, path, query parameters, JSON body: field names, types, required fields), and so is
/// every answer it gives; any mismatch is recorded in <see cref="Violations"/> (the tests assert there
/// are none) and the request is refused with a 400 error body, as Qdrant refuses a malformed one.
/// </summary>
/// <remarks>
/// <para>
/// Behind that it keeps collections and points in dictionaries: single unnamed vectors, Cosine vectors
/// normalised on write as Qdrant does, brute-force scoring (so "exact" and "hnsw_ef" change nothing),
/// filters with must / must_not / should over has_id and match (value / any / except) conditions,
/// UpdateResult "completed" when the request says wait=true and "acknowledged" otherwise, and Qdrant's
/// error bodies and status codes for a missing collection (404), an existing one (409) and a vector of
/// the wrong size (400), with message texts as Qdrant writes them (seen in Qdrant's issue tracker).
/// </para>
/// <para>
/// What it cannot tell: anything the documents do not say (ordering and tie-breaking of real search
/// results, approximate search, optimizer and WAL behaviour, concurrency semantics beyond "one request
/// at a time", authentication details other than the api-key header). A documented feature it does not
/// implement is recorded as a violation, so a test never passes on an unchecked answer.
/// </para>
/// </remarks>
internal sealed class QdrantApiDouble : HttpMessageHandler
{
    public const string ReadyText = "all shards are ready";

    private readonly Lock _lock = new();
    private readonly Dictionary<string, Collection> _collections = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<string> _violations = new();
    private readonly ConcurrentQueue<RecordedRequest> _requests = new();
    private readonly string? _apiKey;
    private long _operationId;

    /// <param name="baseAddress">Where the double pretends to live; a path prefix is allowed.</param>
    /// <param name="apiKey">When set, requests without this <c>api-key</c> header get 401, as Qdrant's do.</param>
    public QdrantApiDouble(string baseAddress = "http://qdrant.test:6333/", string? apiKey = null)
    {
        BaseAddress = new Uri(baseAddress);
        _apiKey = apiKey;
    }

    public Uri BaseAddress { get; }

    /// <summary>Requests or answers that do not match the spec excerpt, or use what the double does not implement.</summary>
    public IReadOnlyCollection<string> Violations => _violations;

    public IReadOnlyList<RecordedRequest> Requests => [.. _requests];

    /// <summary>Runs before the double handles a request; a non-null answer is returned as is (not checked against the spec).</summary>
    public Func<RecordedRequest, CancellationToken, Task<HttpResponseMessage?>>? Intercept { get; set; }

    public void ClearRequests() => _requests.Clear();

    public void AssertCompliant() =>
        Assert.True(_violations.IsEmpty, "Exchanges that do not match Qdrant's documented API:\n" + string.Join("\n", _violations));

    /// <summary>Creates a collection directly, as another client would have.</summary>
    public void AddCollection(string name, int size, string distance = "Cosine", bool namedVectors = false)
    {
        lock (_lock)
        {
            _collections.Add(name, new Collection(size, distance, namedVectors));
        }
    }

    /// <summary>Stores a point directly, as another client would have (the vector is normalised for Cosine).</summary>
    public void AddPoint(string collection, JsonNode id, float[] vector, JsonObject payload)
    {
        lock (_lock)
        {
            var target = _collections[collection];
            target.Points[CanonicalId(id)] = new StoredPoint(id.DeepClone(), target.Prepare(vector), payload, ++_operationId);
        }
    }

    public void RemoveCollection(string name)
    {
        lock (_lock)
        {
            _collections.Remove(name);
        }
    }

    public bool HasCollection(string name)
    {
        lock (_lock)
        {
            return _collections.ContainsKey(name);
        }
    }

    /// <summary>The collection's settings as the double stored them (vector size, distance, m, ef_construct, on_disk_payload, indexes).</summary>
    public (int Size, string Distance, int M, int EfConstruct, bool OnDiskPayload, IReadOnlyDictionary<string, string> Indexes) Describe(string name)
    {
        lock (_lock)
        {
            var c = _collections[name];
            return (c.Size, c.Distance, c.M, c.EfConstruct, c.OnDiskPayload, new Dictionary<string, string>(c.PayloadIndexes));
        }
    }

    /// <summary>Stored points of a collection: canonical id → (vector, payload).</summary>
    public IReadOnlyDictionary<string, (float[] Vector, JsonObject Payload)> Points(string name)
    {
        lock (_lock)
        {
            return _collections[name].Points.ToDictionary(p => p.Key, p => (p.Value.Vector, (JsonObject)p.Value.Payload.DeepClone()));
        }
    }

    /// <summary>A Qdrant error answer: <c>{"status": {"error": message}, "time": ...}</c>.</summary>
    public static HttpResponseMessage ErrorResponse(HttpStatusCode status, string message) =>
        JsonResponse((int)status, new JsonObject { ["status"] = new JsonObject { ["error"] = message }, ["time"] = 0.000012 });

    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var recorded = await RecordAsync(request, cancellationToken).ConfigureAwait(false);
        _requests.Enqueue(recorded);
        if (Intercept is { } intercept && await intercept(recorded, cancellationToken).ConfigureAwait(false) is { } intercepted)
        {
            return intercepted;
        }

        if (_apiKey is not null && recorded.ApiKey != _apiKey)
        {
            return ErrorResponse(HttpStatusCode.Unauthorized, "Must provide an API key or an Authorization bearer token");
        }

        var operation = OpenApiValidator.Qdrant.FindOperation(recorded.Method, recorded.Path);
        if (operation is null)
        {
            Violate($"{recorded}: no such operation in the spec excerpt");
            return new HttpResponseMessage(HttpStatusCode.NotFound);
        }

        var problems = OpenApiValidator.Qdrant.ValidateRequest(operation, recorded.Query, recorded.ContentType, recorded.Body);
        if (problems.Count > 0)
        {
            foreach (var problem in problems)
            {
                Violate($"{recorded}: {problem}");
            }

            return ErrorResponse(HttpStatusCode.BadRequest, "Format error in JSON body: " + problems[0]);
        }

        var (status, body, contentType) = Handle(operation.OperationId, recorded);
        foreach (var problem in OpenApiValidator.Qdrant.ValidateResponse(operation, status, contentType, body))
        {
            Violate($"answer to {recorded}: {problem}");
        }

        return new HttpResponseMessage((HttpStatusCode)status) { Content = new StringContent(body, Encoding.UTF8, contentType) };
    }

    private void Violate(string message) => _violations.Enqueue(message);

    private async Task<RecordedRequest> RecordAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var uri = request.RequestUri!;
        var path = uri.AbsolutePath;
        if (uri.Scheme != BaseAddress.Scheme || uri.Authority != BaseAddress.Authority ||
            !path.StartsWith(BaseAddress.AbsolutePath, StringComparison.Ordinal))
        {
            Violate($"{request.Method} {uri}: not under the base address {BaseAddress}");
        }
        else
        {
            path = "/" + path[BaseAddress.AbsolutePath.Length..];
        }

        var query = uri.Query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries)
            .Select(part => part.Split('=', 2))
            .ToDictionary(kv => Uri.UnescapeDataString(kv[0]), kv => kv.Length > 1 ? Uri.UnescapeDataString(kv[1]) : "");
        var body = request.Content is null ? null : await request.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
        var apiKey = request.Headers.TryGetValues("api-key", out var keys) ? keys.Single() : null;
        return new RecordedRequest(request.Method.Method, path, query, request.Content?.Headers.ContentType?.MediaType, body, apiKey);
    }

    private (int Status, string Body, string ContentType) Handle(string operationId, RecordedRequest request)
    {
        if (operationId == "readyz")
        {
            return (200, ReadyText, "text/plain");
        }

        var name = Uri.UnescapeDataString(request.Path.Split('/')[2]);
        var body = request.Json;
        var wait = request.Query.TryGetValue("wait", out var w) && w == "true";
        try
        {
            lock (_lock)
            {
                var (status, json) = operationId switch
                {
                    "get_collection" => WithCollection(name, c => Ok(c.Info())),
                    "create_collection" => CreateCollection(name, body!.AsObject()),
                    "delete_collection" => Ok(_collections.Remove(name)),
                    "create_field_index" => WithCollection(name, c => CreateIndex(c, body!.AsObject(), wait)),
                    "upsert_points" => WithCollection(name, c => Upsert(c, body!.AsObject(), wait)),
                    "get_points" => WithCollection(name, c => Retrieve(c, body!.AsObject())),
                    "delete_points" => WithCollection(name, c => Delete(c, body!.AsObject(), wait)),
                    "search_points" => WithCollection(name, c => Search(c, body!.AsObject())),
                    "count_points" => WithCollection(name, c => Ok(new JsonObject { ["count"] = c.Points.Values.Count(p => Matches(p, body?["filter"])) })),
                    _ => throw new NotImplementedByDoubleException($"operation {operationId}"),
                };
                return (status, json.ToJsonString(), "application/json");
            }
        }
        catch (NotImplementedByDoubleException ex)
        {
            Violate($"{request}: the test double does not implement {ex.Message}");
            return (500, Error(500, "test double: not implemented: " + ex.Message).Body.ToJsonString(), "application/json");
        }
    }

    private (int Status, JsonNode Body) WithCollection(string name, Func<Collection, (int, JsonNode)> action) =>
        _collections.TryGetValue(name, out var collection)
            ? action(collection)
            : Error(404, $"Not found: Collection `{name}` doesn't exist!");

    private (int, JsonNode) CreateCollection(string name, JsonObject body)
    {
        if (_collections.ContainsKey(name))
        {
            // 409 since Qdrant 1.8 (400 before), same text.
            return Error(409, $"Wrong input: Collection `{name}` already exists!");
        }

        if (body["vectors"] is not JsonObject vectors || vectors["size"] is null)
        {
            throw new NotImplementedByDoubleException("collections without a single unnamed vector");
        }

        _collections[name] = new Collection(vectors["size"]!.GetValue<int>(), vectors["distance"]!.GetValue<string>(), namedVectors: false)
        {
            M = body["hnsw_config"]?["m"]?.GetValue<int>() ?? 16,
            EfConstruct = body["hnsw_config"]?["ef_construct"]?.GetValue<int>() ?? 100,
            OnDiskPayload = body["on_disk_payload"]?.GetValue<bool>() ?? false,
        };
        return Ok(true);
    }

    private (int, JsonNode) CreateIndex(Collection collection, JsonObject body, bool wait)
    {
        if (body["field_schema"] is not JsonValue schema || !schema.TryGetValue<string>(out var type))
        {
            throw new NotImplementedByDoubleException("payload indexes with parameters");
        }

        collection.PayloadIndexes[body["field_name"]!.GetValue<string>()] = type;
        return Ok(UpdateResult(wait));
    }

    private (int, JsonNode) Upsert(Collection collection, JsonObject body, bool wait)
    {
        if (body["points"] is not JsonArray points)
        {
            throw new NotImplementedByDoubleException("the batch form of upsert (PointsBatch)");
        }

        var prepared = new List<(string Key, StoredPoint Point)>();
        foreach (var point in points.Select(p => p!.AsObject()))
        {
            if (point["vector"] is not JsonArray vector)
            {
                throw new NotImplementedByDoubleException("named vectors");
            }

            if (vector.Count != collection.Size)
            {
                // All or nothing: Qdrant validates the whole request before applying it.
                return Error(400, $"Wrong input: Vector dimension error: expected dim: {collection.Size}, got {vector.Count}");
            }

            var id = point["id"]!;
            var payload = point["payload"] is JsonObject p ? (JsonObject)p.DeepClone() : [];
            prepared.Add((CanonicalId(id), new StoredPoint(id.DeepClone(), collection.Prepare(ToFloats(vector)), payload, 0)));
        }

        var version = ++_operationId;
        foreach (var (key, point) in prepared)
        {
            collection.Points[key] = point with { Version = version };
        }

        return Ok(UpdateResult(wait, version));
    }

    private (int, JsonNode) Retrieve(Collection collection, JsonObject body)
    {
        var withPayload = body["with_payload"];
        var withVector = Flag(body["with_vector"], defaultValue: false, "with_vector selectors");

        // Qdrant promises no order; answering in reverse keeps callers from relying on one.
        var result = new JsonArray();
        foreach (var key in body["ids"]!.AsArray().Select(id => CanonicalId(id!)).Distinct().Reverse())
        {
            if (collection.Points.TryGetValue(key, out var point))
            {
                result.Add(new JsonObject
                {
                    ["id"] = point.Id.DeepClone(),
                    ["payload"] = SelectPayload(point.Payload, withPayload, defaultValue: true),
                    ["vector"] = withVector ? ToJson(point.Vector) : null,
                });
            }
        }

        return Ok(result);
    }

    private (int, JsonNode) Delete(Collection collection, JsonObject body, bool wait)
    {
        if (body["points"] is not JsonArray ids)
        {
            throw new NotImplementedByDoubleException("delete by filter (FilterSelector)");
        }

        foreach (var id in ids)
        {
            collection.Points.Remove(CanonicalId(id!));
        }

        return Ok(UpdateResult(wait, ++_operationId));
    }

    private (int, JsonNode) Search(Collection collection, JsonObject body)
    {
        if (body["vector"] is not JsonArray vector)
        {
            throw new NotImplementedByDoubleException("named query vectors");
        }

        if (body["score_threshold"] is not null || body["offset"] is not null)
        {
            throw new NotImplementedByDoubleException("score_threshold and offset");
        }

        if (vector.Count != collection.Size)
        {
            return Error(400, $"Wrong input: Vector dimension error: expected dim: {collection.Size}, got {vector.Count}");
        }

        var query = collection.Prepare(ToFloats(vector));
        var withPayload = body["with_payload"];
        var withVector = Flag(body["with_vector"], defaultValue: false, "with_vector selectors");
        var hits = collection.Points
            .Where(p => Matches(p.Value, body["filter"]))
            .Select(p => (p.Key, Point: p.Value, Score: Dot(query, p.Value.Vector)))
            .OrderByDescending(h => h.Score)
            .ThenBy(h => h.Key, StringComparer.Ordinal)
            .Take(body["limit"]!.GetValue<int>());
        var result = new JsonArray();
        foreach (var (_, point, score) in hits)
        {
            result.Add(new JsonObject
            {
                ["id"] = point.Id.DeepClone(),
                ["version"] = point.Version,
                ["score"] = score,
                ["payload"] = SelectPayload(point.Payload, withPayload, defaultValue: false),
                ["vector"] = withVector ? ToJson(point.Vector) : null,
            });
        }

        return Ok(result);
    }

    private static bool Matches(StoredPoint point, JsonNode? filter)
    {
        if (filter is null)
        {
            return true;
        }

        foreach (var (clause, conditions) in filter.AsObject())
        {
            var list = conditions switch
            {
                null => [],
                JsonArray array => array.Select(c => c!).ToList(),
                _ => [conditions],
            };
            var holds = clause switch
            {
                "must" => list.All(c => Holds(point, c)),
                "must_not" => !list.Any(c => Holds(point, c)),
                "should" => list.Count == 0 || list.Any(c => Holds(point, c)),
                _ => throw new NotImplementedByDoubleException($"filter clause '{clause}'"),
            };
            if (!holds)
            {
                return false;
            }
        }

        return true;
    }

    private static bool Holds(StoredPoint point, JsonNode condition)
    {
        var c = condition.AsObject();
        if (c["has_id"] is JsonArray ids)
        {
            return ids.Any(id => CanonicalId(id!) == CanonicalId(point.Id));
        }

        if (c.ContainsKey("must") || c.ContainsKey("must_not") || c.ContainsKey("should"))
        {
            return Matches(point, c);
        }

        if (c["key"] is JsonValue key && c["match"] is JsonObject match && c.Count == 2)
        {
            var field = point.Payload[key.GetValue<string>()];
            var values = field is JsonArray array ? array.ToList() : [field];
            if (match["value"] is { } value)
            {
                return values.Any(v => JsonNode.DeepEquals(v, value));
            }

            if (match["any"] is JsonArray any)
            {
                return values.Any(v => any.Any(a => JsonNode.DeepEquals(v, a)));
            }

            if (match["except"] is JsonArray except)
            {
                return values.Any(v => v is not null && !except.Any(e => JsonNode.DeepEquals(v, e)));
            }
        }

        throw new NotImplementedByDoubleException($"condition {condition.ToJsonString()}");
    }

    /// <summary>
    /// WithPayloadInterface: absent (the endpoint's default), true/false, a list of keys, or a
    /// PayloadSelector <c>{"include": [...]}</c> / <c>{"exclude": [...]}</c> of top-level keys.
    /// </summary>
    private static JsonObject? SelectPayload(JsonObject payload, JsonNode? selector, bool defaultValue)
    {
        static HashSet<string> Keys(JsonNode? list) =>
            list is JsonArray array ? array.Select(k => k!.GetValue<string>()).ToHashSet(StringComparer.Ordinal)
                : throw new NotImplementedByDoubleException("payload selectors other than lists of keys");
        Func<string, bool> keep = selector switch
        {
            null => _ => defaultValue,
            JsonValue value when value.TryGetValue<bool>(out var flag) => _ => flag,
            JsonArray => Keys(selector).Contains,
            JsonObject o when o["include"] is { } include => Keys(include).Contains,
            JsonObject o when o["exclude"] is { } exclude => k => !Keys(exclude).Contains(k),
            _ => throw new NotImplementedByDoubleException("this with_payload form"),
        };
        if (selector is null && !defaultValue || selector is JsonValue v && !v.GetValue<bool>())
        {
            return null;
        }

        return new JsonObject(payload.Where(kv => keep(kv.Key)).Select(kv => KeyValuePair.Create(kv.Key, kv.Value?.DeepClone())));
    }

    private static bool Flag(JsonNode? node, bool defaultValue, string what) => node switch
    {
        null => defaultValue,
        JsonValue value when value.TryGetValue<bool>(out var flag) => flag,
        _ => throw new NotImplementedByDoubleException(what),
    };

    private JsonObject UpdateResult(bool wait, long? operationId = null) => new()
    {
        ["operation_id"] = operationId ?? ++_operationId,
        ["status"] = wait ? "completed" : "acknowledged",
    };

    private static (int, JsonNode) Ok(JsonNode? result) =>
        (200, new JsonObject { ["result"] = result, ["status"] = "ok", ["time"] = 0.000123 });

    private static (int Status, JsonNode Body) Error(int status, string message) =>
        (status, new JsonObject { ["status"] = new JsonObject { ["error"] = message }, ["time"] = 0.000012 });

    private static HttpResponseMessage JsonResponse(int status, JsonNode body) =>
        new((HttpStatusCode)status) { Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json") };

    private static string CanonicalId(JsonNode id) =>
        id is JsonValue value && value.TryGetValue<string>(out var text)
            ? Guid.Parse(text).ToString("D")
            : ulong.Parse(id.ToJsonString(), CultureInfo.InvariantCulture).ToString(CultureInfo.InvariantCulture);

    private static float[] ToFloats(JsonArray array) => array.Select(x => x!.GetValue<float>()).ToArray();

    private static JsonArray ToJson(float[] vector) => new(vector.Select(x => (JsonNode?)x).ToArray());

    private static float Dot(float[] a, float[] b)
    {
        var sum = 0d;
        for (var i = 0; i < a.Length; i++)
        {
            sum += (double)a[i] * b[i];
        }

        return (float)sum;
    }

    private sealed record StoredPoint(JsonNode Id, float[] Vector, JsonObject Payload, long Version);

    private sealed class Collection(int size, string distance, bool namedVectors)
    {
        public int Size { get; } = size;

        public string Distance { get; } = distance;

        public int M { get; init; } = 16;

        public int EfConstruct { get; init; } = 100;

        public bool OnDiskPayload { get; init; }

        public Dictionary<string, string> PayloadIndexes { get; } = new(StringComparer.Ordinal);

        public Dictionary<string, StoredPoint> Points { get; } = new(StringComparer.Ordinal);

        /// <summary>Cosine collections store unit vectors (Qdrant normalises on write and on query).</summary>
        public float[] Prepare(float[] vector)
        {
            if (Distance != "Cosine")
            {
                return vector;
            }

            var norm = Math.Sqrt(vector.Sum(x => (double)x * x));
            return norm == 0 ? vector : vector.Select(x => (float)(x / norm)).ToArray();
        }

        /// <summary>A CollectionInfo with Qdrant's defaults for everything the double does not model.</summary>
        public JsonObject Info() => new()
        {
            ["status"] = "green",
            ["optimizer_status"] = "ok",
            ["indexed_vectors_count"] = 0,
            ["points_count"] = Points.Count,
            ["segments_count"] = 1,
            ["config"] = new JsonObject
            {
                ["params"] = new JsonObject
                {
                    ["vectors"] = namedVectors
                        ? new JsonObject { ["image"] = new JsonObject { ["size"] = Size, ["distance"] = Distance } }
                        : new JsonObject { ["size"] = Size, ["distance"] = Distance },
                    ["shard_number"] = 1,
                    ["replication_factor"] = 1,
                    ["write_consistency_factor"] = 1,
                    ["on_disk_payload"] = OnDiskPayload,
                },
                ["hnsw_config"] = new JsonObject
                {
                    ["m"] = M,
                    ["ef_construct"] = EfConstruct,
                    ["full_scan_threshold"] = 10000,
                    ["max_indexing_threads"] = 0,
                    ["on_disk"] = false,
                },
                ["optimizer_config"] = new JsonObject
                {
                    ["deleted_threshold"] = 0.2,
                    ["vacuum_min_vector_number"] = 1000,
                    ["default_segment_number"] = 0,
                    ["max_segment_size"] = null,
                    ["memmap_threshold"] = null,
                    ["indexing_threshold"] = 20000,
                    ["flush_interval_sec"] = 5,
                    ["max_optimization_threads"] = null,
                },
                ["wal_config"] = new JsonObject { ["wal_capacity_mb"] = 32, ["wal_segments_ahead"] = 0 },
                ["quantization_config"] = null,
            },
            ["payload_schema"] = new JsonObject(PayloadIndexes.Select(index => KeyValuePair.Create<string, JsonNode?>(
                index.Key, new JsonObject { ["data_type"] = index.Value, ["points"] = Points.Count }))),
        };
    }

    private sealed class NotImplementedByDoubleException(string message) : Exception(message);
}
