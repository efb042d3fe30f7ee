namespace ImageSearch.Core;

/// <summary>What is stored with each image's vector.</summary>
/// <param name="Path">Path relative to the library root ('/' separators).</param>
/// <param name="SizeBytes">File size.</param>
/// <param name="Width">Oriented width in pixels.</param>
/// <param name="Height">Oriented height in pixels.</param>
/// <param name="ContentHash">Full SHA-256 of the file bytes, lowercase hex.</param>
/// <param name="AddedAt">When the image was first indexed.</param>
public sealed record ImagePayload(string Path, long SizeBytes, int Width, int Height, string ContentHash, DateTimeOffset AddedAt);

/// <summary>
/// One point: id, unit vector, payload, and optionally the image's local features in
/// <see cref="LocalFeatureSet.ToBytes"/> form (stored beside the point for re-ranking; an upsert
/// without them keeps what is stored).
/// </summary>
public sealed record VectorRecord(ImageId Id, float[] Vector, ImagePayload Payload, byte[]? LocalFeatures = null);

/// <summary>
/// A search result; <see cref="Score"/> is cosine similarity (higher is better). After re-ranking
/// by local features, <see cref="Inliers"/> is the number of geometrically consistent feature
/// matches with the query (null when the hit was not verified).
/// </summary>
public sealed record SearchHit(ImageId Id, float Score, ImagePayload Payload, int? Inliers = null);

/// <summary>Search parameters.</summary>
/// <param name="Top">Number of hits wanted.</param>
/// <param name="Exact">Brute-force search instead of the approximate index.</param>
/// <param name="Ef">HNSW beam width (ignored by exact search); 0 = store default.</param>
public sealed record VectorQuery(int Top = 10, bool Exact = false, int Ef = 0);

/// <summary>
/// A vector store: upserts are idempotent by id and durable when the returned task completes;
/// searches may run concurrently with writes. One contract test suite runs against every implementation.
/// </summary>
public interface IVectorStore : IDisposable
{
    int Dimensions { get; }

    /// <summary>Inserts or replaces points. Durable (survives a crash) once the task completes.</summary>
    Task UpsertAsync(IReadOnlyList<VectorRecord> records, CancellationToken cancellationToken = default);

    /// <summary>Deletes points; unknown ids are ignored. Returns how many existed.</summary>
    Task<int> DeleteAsync(IReadOnlyList<ImageId> ids, CancellationToken cancellationToken = default);

    Task<IReadOnlyList<SearchHit>> SearchAsync(float[] query, VectorQuery options, CancellationToken cancellationToken = default);

    Task<VectorRecord?> GetAsync(ImageId id, CancellationToken cancellationToken = default);

    Task<long> CountAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// The local features stored with these points, in <see cref="LocalFeatureSet.ToBytes"/> form;
    /// ids unknown or stored without features are absent from the answer.
    /// </summary>
    Task<IReadOnlyDictionary<ImageId, byte[]>> GetLocalFeaturesAsync(IReadOnlyList<ImageId> ids, CancellationToken cancellationToken = default);
}
