using System.Text.Json;
using System.Text.Json.Serialization;

namespace ImageSearch.VectorStore;

/// <summary>
/// Identity of an index folder (manifest.json): which model's vectors it holds. Written once when
/// the folder is created; an open with another model or dimension is refused, so vectors of two
/// models never share an index.
/// </summary>
internal sealed record StoreManifest(
    [property: JsonPropertyName("format")] int Format,
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("dimensions")] int Dimensions,
    [property: JsonPropertyName("createdAt")] DateTimeOffset CreatedAt)
{
    public const int CurrentFormat = 1;
    public const string FileName = "manifest.json";
}

/// <summary>
/// Commit record of the latest HNSW snapshot (hnsw.meta.json). The snapshot file is named after the
/// seq it contains and written before this record, so replacing this record is the single atomic
/// step that switches snapshots; the hash guards against a damaged or foreign file. Vectors is how
/// the graph stores vectors (absent in files written before int8 graphs existed: float32).
/// </summary>
internal sealed record SnapshotMeta(
    [property: JsonPropertyName("format")] int Format,
    [property: JsonPropertyName("file")] string File,
    [property: JsonPropertyName("seq")] long Seq,
    [property: JsonPropertyName("dimensions")] int Dimensions,
    [property: JsonPropertyName("elements")] long Elements,
    [property: JsonPropertyName("length")] long Length,
    [property: JsonPropertyName("sha256")] string Sha256,
    [property: JsonPropertyName("vectors")] HnswVectorFormat Vectors = HnswVectorFormat.Float32)
{
    public const int CurrentFormat = 1;
    public const string FileName = "hnsw.meta.json";
    public const string SnapshotPrefix = "hnsw-";
    public const string SnapshotExtension = ".bin";

    public static string SnapshotFileName(long seq) => $"{SnapshotPrefix}{seq:D20}{SnapshotExtension}";
}

[JsonSourceGenerationOptions(WriteIndented = true)]
[JsonSerializable(typeof(StoreManifest))]
[JsonSerializable(typeof(SnapshotMeta))]
internal sealed partial class StoreJsonContext : JsonSerializerContext;

internal static class StoreJson
{
    public static byte[] Serialize<T>(T value) => JsonSerializer.SerializeToUtf8Bytes(value, typeof(T), StoreJsonContext.Default);

    /// <summary>Reads a JSON file; null when it is missing. Throws <see cref="JsonException"/> when malformed.</summary>
    public static T? Read<T>(string path)
        where T : class =>
        File.Exists(path) ? (T?)JsonSerializer.Deserialize(File.ReadAllBytes(path), typeof(T), StoreJsonContext.Default) : null;
}
