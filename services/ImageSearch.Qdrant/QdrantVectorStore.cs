using System.Globalization;
using System.Net;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using ImageSearch.Core;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace ImageSearch.Qdrant;

/// <summary>
/// An <see cref="IVectorStore"/> kept in a Qdrant collection, spoken to over Qdrant's REST API.
/// </summary>
/// <remarks>
/// <para>
/// Collection: one unnamed vector per point, distance Cosine, created on first use if missing (with
/// <see cref="QdrantOptions.M"/>, <see cref="QdrantOptions.EfConstruct"/> and
/// <see cref="QdrantOptions.OnDiskPayload"/>), plus a keyword payload index on <c>path</c> for
/// <see cref="QdrantPathFilter"/>. An existing collection must have the model's vector size and Cosine
/// distance; its HNSW settings are left as they are.
/// </para>
/// <para>
/// Model identity: the collection config of the Qdrant versions this targets (1.7 and later) has no
/// field for user metadata, so the collection holds a reserved "manifest" point, id
/// 00000000-0000-0000-0000-000000000000, whose payload is <c>{"model_key", "dimensions",
/// "manifest_format"}</c> (its vector is the first unit vector; it means nothing). A collection whose manifest names another model is refused, as is a non-empty collection
/// without one; an empty collection without one is adopted. Every search and count excludes the manifest
/// point with a <c>has_id</c> condition, so callers never see it. The reserved id cannot collide with an
/// image: an <see cref="ImageId"/> is 128 bits of SHA-256 (one that maps to the nil UUID is refused).
/// </para>
/// <para>
/// The first operation (or <see cref="EnsureCollectionAsync"/>) checks and prepares the collection, once
/// per instance; a failure is not remembered, so the next call tries again (Qdrant may have been down).
/// Nothing is sent by the constructor.
/// </para>
/// <para>
/// Semantics follow the embedded store: vectors are checked (dimension, finite, non-zero) and
/// L2-normalised on the client before anything is sent, so an invalid batch is refused whole; later
/// records with the same id win within a batch; deletes ignore unknown ids and count the ones that
/// existed; scores are cosine similarities. Differences: an identical re-upsert is sent again (Qdrant
/// overwrites the point with the same values and a new version; nothing observable changes); a batch
/// larger than <see cref="QdrantOptions.UpsertBatchSize"/> is sent as several requests, each atomic, so
/// a failure part-way leaves the earlier parts applied (retrying the whole call is safe); the existence
/// check of <see cref="DeleteAsync"/> and the delete are two requests, so under concurrent writers the
/// returned count is a snapshot.
/// </para>
/// <para>
/// Durability: writes use <c>?wait=true</c>; the task completes when Qdrant reports the operation
/// "completed" (applied) or "acknowledged" (written to its write-ahead log), which is Qdrant's own
/// durability guarantee. Failures: <see cref="QdrantUnavailableException"/> for what is worth retrying
/// (connection failures, timeouts, 429, 5xx), <see cref="QdrantException"/> for refusals,
/// <see cref="InvalidOperationException"/> for a collection that belongs to another model or shape.
/// </para>
/// </remarks>
public sealed partial class QdrantVectorStore : IVectorStore
{
    /// <summary>Id of the reserved manifest point (the nil UUID).</summary>
    public static readonly Guid ManifestPointId = Guid.Empty;

    private const int ManifestFormat = 1;
    private const string PathField = "path";
    private const string CosineDistance = "Cosine";

    private static readonly Condition NotManifest = new(HasId: [ManifestPointId]);

    private readonly QdrantRestClient _client;
    private readonly ILogger _logger;
    private readonly int _m;
    private readonly int _efConstruct;
    private readonly int _efSearch;
    private readonly bool _onDiskPayload;
    private readonly int _batchSize;
    private readonly string _collectionPath;
    private readonly string _pointsPath;
    private readonly Lock _ensureLock = new();
    private Task? _ensure;
    private volatile bool _disposed;

    /// <summary>Creates the store; sends nothing (see <see cref="EnsureCollectionAsync"/>).</summary>
    /// <param name="options">Settings; validated.</param>
    /// <param name="model">The embedding model whose vectors the collection holds.</param>
    /// <param name="handler">Sends the HTTP requests (not disposed by the store); null for a pooled handler of its own.</param>
    /// <param name="logger">Optional logger.</param>
    public QdrantVectorStore(QdrantOptions options, EmbeddingModelInfo model, HttpMessageHandler? handler = null, ILogger<QdrantVectorStore>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(model);
        options.ThrowIfInvalid();
        ArgumentOutOfRangeException.ThrowIfLessThan(model.Dimensions, 1, nameof(model));

        Dimensions = model.Dimensions;
        ModelKey = model.Key;
        Collection = options.ResolveCollection(model);
        _m = options.M;
        _efConstruct = options.EfConstruct;
        _efSearch = options.EfSearch;
        _onDiskPayload = options.OnDiskPayload;
        _batchSize = options.UpsertBatchSize;
        _logger = logger ?? NullLogger<QdrantVectorStore>.Instance;
        _collectionPath = "collections/" + Uri.EscapeDataString(Collection);
        _pointsPath = _collectionPath + "/points";
        _client = new QdrantRestClient(options, handler);
        if (!string.IsNullOrEmpty(options.ApiKey) && _client.BaseAddress.Scheme == Uri.UriSchemeHttp)
        {
            Log.ApiKeyInClear(_logger, _client.BaseAddress);
        }
    }

    /// <inheritdoc />
    public int Dimensions { get; }

    /// <summary>Model key ("name@version") recorded in the collection's manifest point.</summary>
    public string ModelKey { get; }

    /// <summary>Name of the Qdrant collection.</summary>
    public string Collection { get; }

    /// <summary>Base address of the Qdrant REST API.</summary>
    public Uri Endpoint => _client.BaseAddress;

    /// <summary>
    /// Creates the collection and its <c>path</c> index if missing and checks that it belongs to this
    /// model; runs once per instance (concurrent callers share one attempt; a failed attempt is retried
    /// by the next call). Every other operation calls it first.
    /// </summary>
    /// <exception cref="InvalidOperationException">The collection has another vector size, distance or model, or foreign points.</exception>
    /// <exception cref="QdrantUnavailableException">Qdrant could not be reached.</exception>
    public Task EnsureCollectionAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Task ensure;
        lock (_ensureLock)
        {
            if (_ensure is null || _ensure.IsFaulted || _ensure.IsCanceled)
            {
                // Not tied to one caller's token: other callers may be waiting on the same attempt.
                // HttpClient's timeout bounds it.
                _ensure = EnsureCoreAsync();
            }

            ensure = _ensure;
        }

        return ensure.WaitAsync(cancellationToken);
    }

    /// <summary>
    /// Readiness: <c>GET /readyz</c> (200 once every shard on the node is loaded and can serve; unlike
    /// <c>/healthz</c>, which only says the process answers), then <see cref="EnsureCollectionAsync"/>.
    /// Throws what those throw; returns when the store can serve.
    /// </summary>
    public async Task CheckReadyAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        await _client.GetTextAsync("readyz", cancellationToken).ConfigureAwait(false);
        await EnsureCollectionAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    /// <remarks>
    /// Throws <see cref="ArgumentException"/> for a wrong dimension or a zero or non-finite vector before
    /// anything is sent. Sends <c>PUT /collections/{name}/points?wait=true</c> per
    /// <see cref="QdrantOptions.UpsertBatchSize"/> points.
    /// </remarks>
    public async Task UpsertAsync(IReadOnlyList<VectorRecord> records, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(records);
        ObjectDisposedException.ThrowIf(_disposed, this);
        var latest = new Dictionary<ImageId, PointStruct<ImagePayloadJson>>(records.Count);
        foreach (var record in records)
        {
            ArgumentNullException.ThrowIfNull(record, nameof(records));
            if (record.Id.Value is null)
            {
                throw new ArgumentException("A record has no id.", nameof(records));
            }

            if (record.Payload is not { Path: not null, ContentHash: not null } payload)
            {
                throw new ArgumentException($"Record {record.Id} needs a payload with a path and a content hash.", nameof(records));
            }

            var id = record.Id.ToGuid();
            if (id == ManifestPointId)
            {
                throw new ArgumentException($"Image id {record.Id} maps to the reserved manifest point id.", nameof(records));
            }

            latest[record.Id] = new PointStruct<ImagePayloadJson>(
                id,
                Normalize(record.Vector, nameof(records)),
                new ImagePayloadJson(payload.Path, payload.SizeBytes, payload.Width, payload.Height, payload.ContentHash, payload.AddedAt,
                    record.LocalFeatures));
        }

        if (latest.Count == 0)
        {
            return;
        }

        await EnsureCollectionAsync(cancellationToken).ConfigureAwait(false);

        // An upsert replaces the whole payload: carry over the stored features of points written
        // without any, as the contract says.
        var withoutFeatures = latest.Where(p => p.Value.Payload.LocalFeatures is null).Select(p => p.Key).ToList();
        if (withoutFeatures.Count > 0)
        {
            foreach (var (id, features) in await GetLocalFeaturesAsync(withoutFeatures, cancellationToken).ConfigureAwait(false))
            {
                var point = latest[id];
                latest[id] = point with { Payload = point.Payload with { LocalFeatures = features } };
            }
        }

        foreach (var batch in latest.Values.Chunk(_batchSize))
        {
            await UpsertPointsAsync(batch, QdrantJsonContext.Default.PointsListImagePayloadJson, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    /// <remarks>
    /// Per <see cref="QdrantOptions.UpsertBatchSize"/> ids: retrieves which exist
    /// (<c>POST /collections/{name}/points</c>), then deletes those (<c>POST .../points/delete?wait=true</c>).
    /// </remarks>
    public async Task<int> DeleteAsync(IReadOnlyList<ImageId> ids, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(ids);
        ObjectDisposedException.ThrowIf(_disposed, this);
        var wanted = ids.Where(id => id.Value is not null).Distinct().Select(id => id.ToGuid()).Where(id => id != ManifestPointId).ToList();
        if (wanted.Count == 0)
        {
            return 0;
        }

        await EnsureCollectionAsync(cancellationToken).ConfigureAwait(false);
        var removed = 0;
        foreach (var batch in wanted.Chunk(_batchSize))
        {
            var existing = await RetrieveAsync(batch, PayloadSelection.None, withVector: false,
                QdrantJsonContext.Default.QdrantResponseListPointRecordImagePayloadJson, cancellationToken).ConfigureAwait(false);
            if (existing.Count == 0)
            {
                continue;
            }

            var existingIds = existing.Select(point => ReadPointId(point.Id)).ToList();
            var result = await _client.SendAsync(
                HttpMethod.Post,
                _pointsPath + "/delete?wait=true",
                QdrantRestClient.Json(new PointIdsList(existingIds), QdrantJsonContext.Default.PointIdsList),
                QdrantJsonContext.Default.QdrantResponseUpdateResult,
                cancellationToken).ConfigureAwait(false);
            CheckApplied(result, "delete");
            removed += existingIds.Count;
        }

        return removed;
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<SearchHit>> SearchAsync(float[] query, VectorQuery options, CancellationToken cancellationToken = default) =>
        SearchAsync(query, options, filter: null, cancellationToken);

    /// <summary>
    /// Nearest points by cosine similarity, best first, optionally restricted by path
    /// (<c>POST /collections/{name}/points/search</c> with <c>params.hnsw_ef</c> = <see cref="VectorQuery.Ef"/>
    /// or else <see cref="QdrantOptions.EfSearch"/>, and <c>params.exact</c> = <see cref="VectorQuery.Exact"/>).
    /// Qdrant searches small segments (below its <c>indexing_threshold</c>, 20,000 KB of vectors by
    /// default) exactly whatever is asked.
    /// </summary>
    public async Task<IReadOnlyList<SearchHit>> SearchAsync(
        float[] query, VectorQuery options, QdrantPathFilter? filter, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(query);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Top, 1, nameof(options));
        ArgumentOutOfRangeException.ThrowIfNegative(options.Ef, nameof(options));
        ObjectDisposedException.ThrowIf(_disposed, this);
        var normalized = Normalize(query, nameof(query));
        if (filter?.AnyOf is { Count: 0 })
        {
            return [];
        }

        await EnsureCollectionAsync(cancellationToken).ConfigureAwait(false);
        var request = new SearchRequest(
            normalized,
            options.Top,
            BuildFilter(filter),
            new SearchParams(options.Ef > 0 ? options.Ef : _efSearch, options.Exact),
            WithPayload: PayloadSelection.WithoutFeatures);
        var points = await _client.SendAsync(
            HttpMethod.Post,
            _pointsPath + "/search",
            QdrantRestClient.Json(request, QdrantJsonContext.Default.SearchRequest),
            QdrantJsonContext.Default.QdrantResponseListScoredPoint,
            cancellationToken).ConfigureAwait(false);
        return points.Select(point =>
        {
            var id = ToImageId(ReadPointId(point.Id));
            return new SearchHit(id, point.Score, ToPayload(point.Payload, id));
        }).ToList();
    }

    /// <inheritdoc />
    public async Task<VectorRecord?> GetAsync(ImageId id, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (id.Value is null || id.ToGuid() == ManifestPointId)
        {
            return null;
        }

        await EnsureCollectionAsync(cancellationToken).ConfigureAwait(false);
        var points = await RetrieveAsync([id.ToGuid()], PayloadSelection.WithoutFeatures, withVector: true,
            QdrantJsonContext.Default.QdrantResponseListPointRecordImagePayloadJson, cancellationToken).ConfigureAwait(false);
        if (points.Count == 0)
        {
            return null;
        }

        var point = points[0];
        var vector = point.Vector is { } v && v.Length == Dimensions
            ? v
            : throw new QdrantException($"Point {id} in collection '{Collection}' came back without a {Dimensions}-dimensional vector.");
        return new VectorRecord(id, vector, ToPayload(point.Payload, id));
    }

    /// <inheritdoc />
    /// <remarks>
    /// <c>POST /collections/{name}/points</c> per <see cref="QdrantOptions.UpsertBatchSize"/> ids, with
    /// <c>with_payload: {"include": ["local_features"]}</c>.
    /// </remarks>
    public async Task<IReadOnlyDictionary<ImageId, byte[]>> GetLocalFeaturesAsync(IReadOnlyList<ImageId> ids, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(ids);
        ObjectDisposedException.ThrowIf(_disposed, this);
        var result = new Dictionary<ImageId, byte[]>();
        var wanted = ids.Where(id => id.Value is not null).Distinct().Where(id => id.ToGuid() != ManifestPointId).ToList();
        if (wanted.Count == 0)
        {
            return result;
        }

        await EnsureCollectionAsync(cancellationToken).ConfigureAwait(false);
        foreach (var batch in wanted.Chunk(_batchSize))
        {
            var points = await RetrieveAsync(batch.Select(id => id.ToGuid()).ToList(), PayloadSelection.OnlyFeatures, withVector: false,
                QdrantJsonContext.Default.QdrantResponseListPointRecordImagePayloadJson, cancellationToken).ConfigureAwait(false);
            foreach (var point in points)
            {
                if (point.Payload?.LocalFeatures is { } features)
                {
                    result[ToImageId(ReadPointId(point.Id))] = features;
                }
            }
        }

        return result;
    }

    /// <inheritdoc />
    /// <remarks><c>POST /collections/{name}/points/count</c> with <c>exact: true</c>, without the manifest point.</remarks>
    public async Task<long> CountAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        await EnsureCollectionAsync(cancellationToken).ConfigureAwait(false);
        return await CountPointsAsync(new Filter(Must: null, MustNot: [NotManifest]), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Releases the HTTP connections (the collection is left as it is).</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _client.Dispose();
    }

    private async Task EnsureCoreAsync()
    {
        var cancellationToken = CancellationToken.None;
        var info = await GetCollectionAsync(cancellationToken).ConfigureAwait(false);
        if (info is null)
        {
            if (await TryCreateCollectionAsync(cancellationToken).ConfigureAwait(false))
            {
                await CreatePathIndexAsync(cancellationToken).ConfigureAwait(false);
                await WriteManifestAsync(cancellationToken).ConfigureAwait(false);
                Log.Ready(_logger, Collection, _client.BaseAddress, ModelKey);
                return;
            }

            // Another instance created it between our GET and PUT: check what it made.
            info = await GetCollectionAsync(cancellationToken).ConfigureAwait(false)
                   ?? throw new QdrantException($"Qdrant collection '{Collection}' already existed when created, then could not be found.");
        }

        CheckVectors(info);
        PayloadIndexInfo? index = null;
        if (info.PayloadSchema is null || !info.PayloadSchema.TryGetValue(PathField, out index))
        {
            await CreatePathIndexAsync(cancellationToken).ConfigureAwait(false);
        }
        else if (index?.DataType != "keyword")
        {
            Log.UnexpectedPathIndex(_logger, Collection, index?.DataType ?? "unknown");
        }

        await CheckManifestAsync(cancellationToken).ConfigureAwait(false);
        Log.Ready(_logger, Collection, _client.BaseAddress, ModelKey);
    }

    /// <summary><c>GET /collections/{name}</c>; null when it does not exist (404).</summary>
    private async Task<CollectionInfo?> GetCollectionAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await _client.SendAsync(HttpMethod.Get, _collectionPath, null, QdrantJsonContext.Default.QdrantResponseCollectionInfo, cancellationToken)
                .ConfigureAwait(false);
        }
        catch (QdrantException ex) when (ex.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
    }

    /// <summary><c>PUT /collections/{name}</c>; false when it already exists (409 since Qdrant 1.8, 400 before).</summary>
    private async Task<bool> TryCreateCollectionAsync(CancellationToken cancellationToken)
    {
        var request = new CreateCollectionRequest(
            new VectorParams(Dimensions, CosineDistance), new HnswConfigDiff(_m, _efConstruct), _onDiskPayload);
        try
        {
            await _client.SendAsync(HttpMethod.Put, _collectionPath,
                QdrantRestClient.Json(request, QdrantJsonContext.Default.CreateCollectionRequest),
                QdrantJsonContext.Default.QdrantResponseBoolean, cancellationToken).ConfigureAwait(false);
        }
        catch (QdrantException ex) when (ex.StatusCode == HttpStatusCode.Conflict ||
                                         (ex.StatusCode == HttpStatusCode.BadRequest && ex.ServerError?.Contains("already exists", StringComparison.Ordinal) == true))
        {
            return false;
        }

        Log.Created(_logger, Collection, _client.BaseAddress, Dimensions, _m, _efConstruct);
        return true;
    }

    /// <summary><c>PUT /collections/{name}/index?wait=true</c>: keyword index on <c>path</c> (Qdrant answers OK if it exists).</summary>
    private async Task CreatePathIndexAsync(CancellationToken cancellationToken)
    {
        var result = await _client.SendAsync(HttpMethod.Put, _collectionPath + "/index?wait=true",
            QdrantRestClient.Json(new CreateFieldIndexRequest(PathField, "keyword"), QdrantJsonContext.Default.CreateFieldIndexRequest),
            QdrantJsonContext.Default.QdrantResponseUpdateResult, cancellationToken).ConfigureAwait(false);
        CheckApplied(result, "payload index creation");
        Log.IndexCreated(_logger, Collection, PathField);
    }

    private void CheckVectors(CollectionInfo info)
    {
        var vectors = info.Config?.Params?.Vectors ?? default;
        if (vectors.ValueKind != JsonValueKind.Object ||
            !vectors.TryGetProperty("size", out var size) || size.ValueKind != JsonValueKind.Number ||
            !vectors.TryGetProperty("distance", out var distance) || distance.ValueKind != JsonValueKind.String)
        {
            throw new InvalidOperationException(
                $"Qdrant collection '{Collection}' does not have one unnamed vector per point (named vectors or none); ImageSearch cannot use it.");
        }

        if (!size.TryGetInt32(out var dimensions) || dimensions != Dimensions)
        {
            throw new InvalidOperationException(
                $"Qdrant collection '{Collection}' holds {size.GetRawText()}-dimensional vectors, but model {ModelKey} makes {Dimensions}. " +
                "Use another collection (an empty QdrantOptions.Collection gives one per model).");
        }

        if (distance.GetString() != CosineDistance)
        {
            throw new InvalidOperationException(
                $"Qdrant collection '{Collection}' uses distance {distance.GetString()}; ImageSearch needs {CosineDistance}.");
        }
    }

    /// <summary>Checks the manifest point, or writes it into an empty collection that lacks one.</summary>
    private async Task CheckManifestAsync(CancellationToken cancellationToken)
    {
        var found = await RetrieveAsync([ManifestPointId], PayloadSelection.All, withVector: false,
            QdrantJsonContext.Default.QdrantResponseListPointRecordManifestPayloadJson, cancellationToken).ConfigureAwait(false);
        if (found.Count > 0)
        {
            var manifest = found[0].Payload;
            if (manifest?.ModelKey != ModelKey || manifest.Dimensions != Dimensions)
            {
                throw new InvalidOperationException(
                    $"Qdrant collection '{Collection}' holds vectors of model {manifest?.ModelKey ?? "(unnamed)"} " +
                    $"({manifest?.Dimensions?.ToString(CultureInfo.InvariantCulture) ?? "?"} dimensions), not {ModelKey} ({Dimensions}). " +
                    "Use another collection (an empty QdrantOptions.Collection gives one per model).");
            }

            return;
        }

        var points = await CountPointsAsync(filter: null, cancellationToken).ConfigureAwait(false);
        if (points > 0)
        {
            throw new InvalidOperationException(
                $"Qdrant collection '{Collection}' holds {points} points but no ImageSearch manifest point ({ManifestPointId}); " +
                "it was not created by ImageSearch, so it is not used.");
        }

        await WriteManifestAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task WriteManifestAsync(CancellationToken cancellationToken)
    {
        // Any valid vector will do; Cosine needs a non-zero one.
        var vector = new float[Dimensions];
        vector[0] = 1;
        await UpsertPointsAsync(
            [new PointStruct<ManifestPayloadJson>(ManifestPointId, vector, new ManifestPayloadJson(ModelKey, Dimensions, ManifestFormat))],
            QdrantJsonContext.Default.PointsListManifestPayloadJson,
            cancellationToken).ConfigureAwait(false);
        Log.ManifestWritten(_logger, Collection, ModelKey);
    }

    private async Task UpsertPointsAsync<TPayload>(
        IReadOnlyList<PointStruct<TPayload>> points, JsonTypeInfo<PointsList<TPayload>> type, CancellationToken cancellationToken)
    {
        var result = await _client.SendAsync(HttpMethod.Put, _pointsPath + "?wait=true",
            QdrantRestClient.Json(new PointsList<TPayload>(points), type),
            QdrantJsonContext.Default.QdrantResponseUpdateResult, cancellationToken).ConfigureAwait(false);
        CheckApplied(result, "upsert");
    }

    /// <summary><c>POST /collections/{name}/points</c>: the points among <paramref name="ids"/> that exist, in no particular order.</summary>
    private Task<List<PointRecord<TPayload>>> RetrieveAsync<TPayload>(
        IReadOnlyList<Guid> ids, JsonElement withPayload, bool withVector,
        JsonTypeInfo<QdrantResponse<List<PointRecord<TPayload>>>> type, CancellationToken cancellationToken) =>
        _client.SendAsync(HttpMethod.Post, _pointsPath,
            QdrantRestClient.Json(new PointRequest(ids, withPayload, withVector), QdrantJsonContext.Default.PointRequest),
            type, cancellationToken);

    private async Task<long> CountPointsAsync(Filter? filter, CancellationToken cancellationToken)
    {
        var result = await _client.SendAsync(HttpMethod.Post, _pointsPath + "/count",
            QdrantRestClient.Json(new CountRequest(filter, Exact: true), QdrantJsonContext.Default.CountRequest),
            QdrantJsonContext.Default.QdrantResponseCountResult, cancellationToken).ConfigureAwait(false);
        return result.Count;
    }

    private static Filter BuildFilter(QdrantPathFilter? filter)
    {
        var mustNot = new List<Condition> { NotManifest };
        if (filter?.NoneOf is { Count: > 0 } excluded)
        {
            mustNot.Add(new Condition(Key: PathField, Match: new MatchAny([.. excluded])));
        }

        var must = filter?.AnyOf is { Count: > 0 } included
            ? new List<Condition> { new(Key: PathField, Match: new MatchAny([.. included])) }
            : null;
        return new Filter(must, mustNot);
    }

    /// <summary>With <c>wait=true</c> Qdrant answers "completed"; "acknowledged" (in its WAL) is durable too.</summary>
    private static void CheckApplied(UpdateResult result, string operation)
    {
        if (result.Status is not ("completed" or "acknowledged"))
        {
            throw new QdrantException($"Qdrant answered the {operation} with status '{result.Status}' instead of 'completed'.");
        }
    }

    private Guid ReadPointId(JsonElement id) =>
        id.ValueKind == JsonValueKind.String && Guid.TryParse(id.GetString(), out var guid)
            ? guid
            : throw new QdrantException(
                $"Qdrant collection '{Collection}' returned point id {id.GetRawText()}, which is not a UUID; it holds points not written by ImageSearch.");

    private static ImageId ToImageId(Guid id) => ImageId.Parse(id.ToString("N", CultureInfo.InvariantCulture));

    private ImagePayload ToPayload(ImagePayloadJson? payload, ImageId id) =>
        payload is { Path: { } path, SizeBytes: { } size, Width: { } width, Height: { } height, ContentHash: { } hash, AddedAt: { } added }
            ? new ImagePayload(path, size, width, height, hash, added)
            : throw new QdrantException($"Point {id} in Qdrant collection '{Collection}' has no complete ImageSearch payload.");

    /// <summary>A unit-length copy of <paramref name="vector"/>; throws for a wrong length, zero or non-finite values.</summary>
    private float[] Normalize(float[]? vector, string parameterName)
    {
        if (vector is null || vector.Length != Dimensions)
        {
            throw new ArgumentException(
                $"Expected a vector of {Dimensions} dimensions, got {vector?.Length.ToString(CultureInfo.InvariantCulture) ?? "null"}.", parameterName);
        }

        // A NaN or infinity anywhere makes the sum non-finite; accumulating in double cannot overflow.
        var sum = 0d;
        foreach (var x in vector)
        {
            sum += (double)x * x;
        }

        var norm = Math.Sqrt(sum);
        if (!double.IsFinite(norm) || norm == 0)
        {
            throw new ArgumentException("Vectors must be finite and non-zero.", parameterName);
        }

        var result = new float[vector.Length];
        for (var i = 0; i < vector.Length; i++)
        {
            result[i] = (float)(vector[i] / norm);
        }

        return result;
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Created Qdrant collection {Collection} at {Endpoint}: {Dimensions} dimensions, Cosine, m={M}, ef_construct={EfConstruct}")]
        public static partial void Created(ILogger logger, string collection, Uri endpoint, int dimensions, int m, int efConstruct);

        [LoggerMessage(2, LogLevel.Information, "Created keyword payload index on {Field} in Qdrant collection {Collection}")]
        public static partial void IndexCreated(ILogger logger, string collection, string field);

        [LoggerMessage(3, LogLevel.Information, "Wrote the manifest point for {Model} into Qdrant collection {Collection}")]
        public static partial void ManifestWritten(ILogger logger, string collection, string model);

        [LoggerMessage(4, LogLevel.Information, "Using Qdrant collection {Collection} at {Endpoint} for {Model}")]
        public static partial void Ready(ILogger logger, string collection, Uri endpoint, string model);

        [LoggerMessage(5, LogLevel.Warning, "The payload index on path in Qdrant collection {Collection} is of type {DataType}, not keyword; path filters may be slow")]
        public static partial void UnexpectedPathIndex(ILogger logger, string collection, string dataType);

        [LoggerMessage(6, LogLevel.Warning, "A Qdrant API key is configured for {Endpoint}, which is plain http: the key travels in clear text")]
        public static partial void ApiKeyInClear(ILogger logger, Uri endpoint);
    }
}
