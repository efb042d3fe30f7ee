namespace ImageSearch.Core;

/// <summary>State of one file of the library.</summary>
public enum FileState
{
    Indexed,
    Failed,
}

/// <summary>A file of the library and what became of it.</summary>
public sealed record CatalogEntry(string Path, ImageId? Id, FileState State, string? Reason, long SizeBytes, DateTimeOffset ModifiedAt, DateTimeOffset UpdatedAt);

/// <summary>Counts shown by status.</summary>
public sealed record CatalogCounts(long Files, long Indexed, long Failed);

/// <summary>
/// Which file path holds which image. Several paths may hold the same bytes (one point in the
/// store); a point is deleted only when its last path disappears. Also records failures with reasons.
/// </summary>
public interface ICatalog
{
    /// <summary>Records that <paramref name="path"/> now holds image <paramref name="id"/>. Returns the id the path held before, if different.</summary>
    Task<ImageId?> SetIndexedAsync(string path, ImageId id, long sizeBytes, DateTimeOffset modifiedAt, CancellationToken cancellationToken = default);

    /// <summary>Records a permanent failure for the path. Returns the id the path held before, if any.</summary>
    Task<ImageId?> SetFailedAsync(string path, string reason, long sizeBytes, DateTimeOffset modifiedAt, CancellationToken cancellationToken = default);

    /// <summary>Forgets the path. Returns the id it held, if any.</summary>
    Task<ImageId?> RemoveAsync(string path, CancellationToken cancellationToken = default);

    Task<CatalogEntry?> GetAsync(string path, CancellationToken cancellationToken = default);

    /// <summary>How many paths still reference the image.</summary>
    Task<int> CountPathsAsync(ImageId id, CancellationToken cancellationToken = default);

    /// <summary>Up to <paramref name="limit"/> paths that hold the image, in path order.</summary>
    Task<IReadOnlyList<string>> ListPathsAsync(ImageId id, int limit, CancellationToken cancellationToken = default);

    /// <summary>Any one path that holds the image (to serve its bytes), or null.</summary>
    Task<string?> FindPathAsync(ImageId id, CancellationToken cancellationToken = default);

    Task<IReadOnlyList<CatalogEntry>> ListAsync(FileState? state, int limit, CancellationToken cancellationToken = default);

    /// <summary>
    /// Up to <paramref name="limit"/> indexed entries, the most recently recorded first (by
    /// <see cref="CatalogEntry.UpdatedAt"/>: a file added or changed lately comes first). For the
    /// library view's "recently added".
    /// </summary>
    Task<IReadOnlyList<CatalogEntry>> ListRecentAsync(int limit, CancellationToken cancellationToken = default);

    /// <summary>Up to <paramref name="limit"/> entries in path order, after <paramref name="afterPath"/> (null: from the start).</summary>
    Task<IReadOnlyList<CatalogEntry>> ListPageAsync(string? afterPath, int limit, CancellationToken cancellationToken = default);

    Task<CatalogCounts> CountsAsync(CancellationToken cancellationToken = default);
}
