using ImageSearch.Core;

namespace ImageSearch.Api;

/// <summary>One query of a batch.</summary>
public sealed record BatchQuery(byte[] Image, BoundingBox? Box);

/// <summary>Answer of <c>POST /api/search/batch</c>, in the order of the images sent.</summary>
public sealed record BatchSearchResponse(IReadOnlyList<SearchResponse> Results);

/// <summary>An image to send back: a file on disk, or bytes fetched from elsewhere.</summary>
public sealed record ImageContent(string? FilePath, byte[]? Bytes, string ContentType);

/// <summary>
/// What the HTTP API runs on. <see cref="LocalSearchBackend"/> answers in-process (the embedded
/// mode and the query service); <see cref="RemoteSearchBackend"/> fans out to query services (the
/// distributed gateway). Input validation happens once, in the API, before a backend is called.
/// </summary>
public interface ISearchBackend
{
    /// <summary>
    /// One query; <paramref name="regions"/> also searches sliding windows of a query without a box
    /// (region mode); <paramref name="expand"/> &gt; 0 re-searches with the query expanded by that many
    /// top neighbours (alpha query expansion); <paramref name="rerank"/> verifies the nearest neighbours
    /// by local features where the service has them on.
    /// </summary>
    Task<SearchResponse> SearchAsync(byte[] image, BoundingBox? box, int top, bool exact, bool regions, int expand, bool rerank, CancellationToken ct);

    /// <summary>Many queries at once (one model call per batch where the backend embeds); results in query order.</summary>
    Task<IReadOnlyList<SearchResponse>> SearchManyAsync(IReadOnlyList<BatchQuery> queries, int top, bool exact, CancellationToken ct);

    /// <summary>Null when no backend knows the id.</summary>
    Task<SearchResponse?> SearchByIdAsync(ImageId id, int top, bool exact, bool rerank, CancellationToken ct);

    /// <summary>The original file, or null when no file of the library holds the image.</summary>
    Task<ImageContent?> GetImageAsync(ImageId id, CancellationToken ct);

    /// <summary>The library-relative paths of the files that hold the image (up to <paramref name="limit"/>); empty when unknown.</summary>
    Task<IReadOnlyList<string>> GetFilePathsAsync(ImageId id, int limit, CancellationToken ct);

    /// <summary>A JPEG thumbnail, or null when unknown.</summary>
    Task<byte[]?> GetThumbnailAsync(ImageId id, int size, CancellationToken ct);

    Task<StatusResponse> GetStatusAsync(CancellationToken ct);

    /// <summary>Up to <paramref name="limit"/> indexed images, the most recently added or changed first; copies listed once.</summary>
    Task<IReadOnlyList<ImageDto>> ListRecentAsync(int limit, CancellationToken ct);

    /// <summary>What became of each library-relative path: indexed, pending, failed (with the reason) or missing; in the order asked.</summary>
    Task<IReadOnlyList<FileStateDto>> GetFileStatesAsync(IReadOnlyList<string> paths, CancellationToken ct);
}

/// <summary>A backend answered with an RFC 7807 problem (bad input): passed on to the client as it is.</summary>
public sealed class BackendProblemException(int status, string title, string detail) : Exception(detail)
{
    public int Status { get; } = status;

    public string Title { get; } = title;
}

/// <summary>No backend could answer (all down or over their time budget).</summary>
public sealed class BackendUnavailableException(string message) : Exception(message);
