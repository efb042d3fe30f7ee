using System.Text.Json;
using System.Text.Json.Serialization;

namespace ImageSearch.Qdrant;

// The JSON shapes of the Qdrant REST API that the store uses, named after the OpenAPI schemas of
// qdrant/qdrant docs/redoc/master/openapi.json (CreateCollection, PointsList, SearchRequest, ...).
// Property names become snake_case through the context below; null properties are not written, so
// optional fields the store does not set stay absent rather than null.

/// <summary>CreateCollection: one unnamed vector per point.</summary>
internal sealed record CreateCollectionRequest(VectorParams Vectors, HnswConfigDiff HnswConfig, bool OnDiskPayload);

/// <summary>VectorParams (single-vector mode).</summary>
internal sealed record VectorParams(int Size, string Distance);

/// <summary>HnswConfigDiff.</summary>
internal sealed record HnswConfigDiff(int M, int EfConstruct);

/// <summary>CreateFieldIndex with a PayloadSchemaType ("keyword").</summary>
internal sealed record CreateFieldIndexRequest(string FieldName, string FieldSchema);

/// <summary>PointsList of PointStruct with <typeparamref name="TPayload"/> payloads.</summary>
internal sealed record PointsList<TPayload>(IReadOnlyList<PointStruct<TPayload>> Points);

/// <summary>PointStruct: a UUID id, an unnamed vector and a payload.</summary>
internal sealed record PointStruct<TPayload>(Guid Id, float[] Vector, TPayload Payload);

/// <summary>PointIdsList (the delete selector).</summary>
internal sealed record PointIdsList(IReadOnlyList<Guid> Points);

/// <summary>
/// PointRequest (retrieve by ids). <see cref="WithPayload"/> is a WithPayloadInterface: true, false,
/// or a PayloadSelector (<see cref="PayloadSelection"/>).
/// </summary>
internal sealed record PointRequest(IReadOnlyList<Guid> Ids, JsonElement WithPayload, bool WithVector);

/// <summary>SearchRequest with an unnamed vector; <see cref="WithPayload"/> as in <see cref="PointRequest"/>.</summary>
internal sealed record SearchRequest(float[] Vector, int Limit, Filter Filter, SearchParams Params, JsonElement WithPayload);

/// <summary>The WithPayloadInterface values the store sends.</summary>
internal static class PayloadSelection
{
    public static JsonElement None { get; } = JsonSerializer.SerializeToElement(false, QdrantJsonContext.Default.Boolean);

    public static JsonElement All { get; } = JsonSerializer.SerializeToElement(true, QdrantJsonContext.Default.Boolean);

    /// <summary>PayloadSelectorExclude: everything but the (large) local features.</summary>
    public static JsonElement WithoutFeatures { get; } = Selector("exclude", ImagePayloadJson.LocalFeaturesField);

    /// <summary>PayloadSelectorInclude: only the local features.</summary>
    public static JsonElement OnlyFeatures { get; } = Selector("include", ImagePayloadJson.LocalFeaturesField);

    private static JsonElement Selector(string kind, string field) =>
        JsonDocument.Parse($$"""{"{{kind}}": ["{{field}}"]}""").RootElement.Clone();
}

/// <summary>SearchParams.</summary>
internal sealed record SearchParams(int HnswEf, bool Exact);

/// <summary>CountRequest; no filter counts every point.</summary>
internal sealed record CountRequest(Filter? Filter, bool Exact);

/// <summary>Filter: conditions that must all hold and conditions none of which may hold.</summary>
internal sealed record Filter(IReadOnlyList<Condition>? Must, IReadOnlyList<Condition>? MustNot);

/// <summary>
/// A Condition: either HasIdCondition (<see cref="HasId"/>) or FieldCondition (<see cref="Key"/> +
/// <see cref="Match"/>); the unused half stays null and is not written.
/// </summary>
internal sealed record Condition(IReadOnlyList<Guid>? HasId = null, string? Key = null, MatchAny? Match = null);

/// <summary>MatchAny: the field equals one of the values.</summary>
internal sealed record MatchAny(IReadOnlyList<string> Any);

/// <summary>
/// The payload ImageSearch stores with every image point (mirrors <see cref="Core.ImagePayload"/>),
/// plus the image's local features (base64 of <see cref="Core.LocalFeatureSet.ToBytes"/>), which
/// searches leave out and re-ranking fetches on their own.
/// </summary>
internal sealed record ImagePayloadJson(
    string? Path, long? SizeBytes, int? Width, int? Height, string? ContentHash, DateTimeOffset? AddedAt, byte[]? LocalFeatures = null)
{
    public const string LocalFeaturesField = "local_features";
}

/// <summary>The payload of the reserved manifest point: which model's vectors the collection holds.</summary>
internal sealed record ManifestPayloadJson(string? ModelKey, int? Dimensions, int? ManifestFormat);

/// <summary>
/// The envelope of every successful JSON answer: <c>{"result": ..., "status": "ok", "time": 0.001}</c>.
/// Only the result is read; error bodies (ErrorResponse) are read by <see cref="QdrantRestClient"/>.
/// </summary>
internal sealed record QdrantResponse<T>(T? Result);

/// <summary>CollectionInfo, the parts the store checks.</summary>
internal sealed record CollectionInfo(CollectionConfig? Config, Dictionary<string, PayloadIndexInfo>? PayloadSchema);

/// <summary>CollectionConfig, the parts the store checks.</summary>
internal sealed record CollectionConfig(CollectionParams? Params);

/// <summary>
/// CollectionParams: <see cref="Vectors"/> is raw JSON because VectorsConfig is either one VectorParams or
/// a map of named ones, and the store must tell which.
/// </summary>
internal sealed record CollectionParams(JsonElement Vectors);

/// <summary>PayloadIndexInfo.</summary>
internal sealed record PayloadIndexInfo(string? DataType);

/// <summary>UpdateResult of a write; <see cref="Status"/> is "acknowledged" or "completed".</summary>
internal sealed record UpdateResult(long? OperationId, string Status);

/// <summary>
/// Record (a retrieved point). <see cref="Id"/> is raw JSON: ExtendedPointId may be an integer in a
/// collection written by something else, and that deserves a clear error, not a JSON one.
/// </summary>
internal sealed record PointRecord<TPayload>(JsonElement Id, TPayload? Payload, float[]? Vector);

/// <summary>ScoredPoint (a search hit).</summary>
internal sealed record ScoredPoint(JsonElement Id, float Score, ImagePayloadJson? Payload);

/// <summary>CountResult.</summary>
internal sealed record CountResult(long Count);

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(CreateCollectionRequest))]
[JsonSerializable(typeof(CreateFieldIndexRequest))]
[JsonSerializable(typeof(PointsList<ImagePayloadJson>))]
[JsonSerializable(typeof(PointsList<ManifestPayloadJson>))]
[JsonSerializable(typeof(PointIdsList))]
[JsonSerializable(typeof(PointRequest))]
[JsonSerializable(typeof(SearchRequest))]
[JsonSerializable(typeof(CountRequest))]
[JsonSerializable(typeof(bool))]
[JsonSerializable(typeof(QdrantResponse<bool>))]
[JsonSerializable(typeof(QdrantResponse<CollectionInfo>))]
[JsonSerializable(typeof(QdrantResponse<UpdateResult>))]
[JsonSerializable(typeof(QdrantResponse<List<PointRecord<ImagePayloadJson>>>))]
[JsonSerializable(typeof(QdrantResponse<List<PointRecord<ManifestPayloadJson>>>))]
[JsonSerializable(typeof(QdrantResponse<List<ScoredPoint>>))]
[JsonSerializable(typeof(QdrantResponse<CountResult>))]
internal sealed partial class QdrantJsonContext : JsonSerializerContext;
