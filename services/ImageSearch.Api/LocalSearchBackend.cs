using ImageSearch.Core;
using ImageSearch.Pipeline;

namespace ImageSearch.Api;

/// <summary>Answers in this process: the embedded mode and the query service.</summary>
public sealed class LocalSearchBackend(
    SearchService search,
    IVectorStore store,
    ICatalog catalog,
    IEmbedder embedder,
    IImageDecoder decoder,
    FolderLibrary library,
    IngestionProgress progress,
    IngestionStats stats,
    IOptions<HttpOptions> httpOptions,
    IOptions<RerankOptions> rerankOptions) : ISearchBackend
{
    private const int MaxFailuresListed = 100;

    public async Task<SearchResponse> SearchAsync(byte[] image, BoundingBox? box, int top, bool exact, bool regions, int expand, bool rerank, CancellationToken ct)
    {
        // Header check first: a decompression bomb is refused before any pixel is allocated.
        var limits = httpOptions.Value;
        search.CheckQueryImage(image, new DecodeLimits(limits.MaxRequestBytes, limits.MaxQueryPixels));
        var result = await search.SearchAsync(new ImageQuery(image, box, top, exact, regions, expand, rerank), ct).ConfigureAwait(false);
        return ToResponse(top, box, result);
    }

    public async Task<IReadOnlyList<SearchResponse>> SearchManyAsync(IReadOnlyList<BatchQuery> queries, int top, bool exact, CancellationToken ct)
    {
        var limits = httpOptions.Value;
        foreach (var q in queries)
        {
            search.CheckQueryImage(q.Image, new DecodeLimits(limits.MaxRequestBytes, limits.MaxQueryPixels));
        }

        var results = await search.SearchManyAsync(queries.Select(q => new ImageQuery(q.Image, q.Box, top, exact)).ToList(), ct).ConfigureAwait(false);
        return results.Select((r, i) => ToResponse(top, queries[i].Box, r)).ToList();
    }

    public async Task<SearchResponse?> SearchByIdAsync(ImageId id, int top, bool exact, bool rerank, CancellationToken ct)
    {
        var result = await search.SearchByIdAsync(id, top, exact, rerank, ct).ConfigureAwait(false);
        return result is null ? null : ToResponse(top, null, result);
    }

    public async Task<ImageContent?> GetImageAsync(ImageId id, CancellationToken ct)
    {
        var full = await ResolveAsync(id, ct).ConfigureAwait(false);
        return full is null ? null : new ImageContent(full, null, ContentTypeFor(full));
    }

    public Task<IReadOnlyList<string>> GetFilePathsAsync(ImageId id, int limit, CancellationToken ct) => catalog.ListPathsAsync(id, limit, ct);

    public async Task<byte[]?> GetThumbnailAsync(ImageId id, int size, CancellationToken ct)
    {
        var full = await ResolveAsync(id, ct).ConfigureAwait(false);
        if (full is null)
        {
            return null;
        }

        var bytes = await File.ReadAllBytesAsync(full, ct).ConfigureAwait(false);
        return decoder.Thumbnail(bytes, size);
    }

    public async Task<StatusResponse> GetStatusAsync(CancellationToken ct)
    {
        var counts = await catalog.CountsAsync(ct).ConfigureAwait(false);
        var failures = await catalog.ListAsync(FileState.Failed, MaxFailuresListed, ct).ConfigureAwait(false);
        return new StatusResponse(embedder.Model.Key, embedder.Device, embedder.Model.Dimensions,
            await store.CountAsync(ct).ConfigureAwait(false), counts.Files, counts.Failed, progress.Pending,
            failures.Select(f => new FailureDto(f.Path, f.Reason, f.UpdatedAt)).ToList(),
            QueueWaitP50Ms: stats.QueueWaitPercentile(0.50), QueueWaitP99Ms: stats.QueueWaitPercentile(0.99), LastIndexedAt: stats.LastIndexedAt);
    }

    public async Task<IReadOnlyList<ImageDto>> ListRecentAsync(int limit, CancellationToken ct)
    {
        // Copies share an image: read a few more entries than asked so the list is still full after they are folded.
        var entries = await catalog.ListRecentAsync(limit * 2, ct).ConfigureAwait(false);
        var images = new List<ImageDto>(limit);
        var seen = new HashSet<ImageId>();
        foreach (var entry in entries)
        {
            if (images.Count == limit)
            {
                break;
            }

            if (entry.Id is { } id && seen.Add(id) && await store.GetAsync(id, ct).ConfigureAwait(false) is { } record)
            {
                images.Add(ImageDto.From(entry.Path, entry.SizeBytes, record));
            }
        }

        return images;
    }

    public async Task<IReadOnlyList<FileStateDto>> GetFileStatesAsync(IReadOnlyList<string> paths, CancellationToken ct)
    {
        var states = new List<FileStateDto>(paths.Count);
        foreach (var path in paths)
        {
            LibraryFile? file;
            try
            {
                file = library.Stat(path);
            }
            catch (ArgumentException)
            {
                file = null;
            }

            var entry = await catalog.GetAsync(path, ct).ConfigureAwait(false);
            states.Add(entry switch
            {
                _ when progress.IsPending(path) => new FileStateDto(path, FileStates.Pending),
                null => new FileStateDto(path, file is null ? FileStates.Missing : FileStates.Pending),
                _ when file is null => new FileStateDto(path, FileStates.Missing),

                // The catalog describes an older version of the file: the new one is on its way.
                _ when entry.SizeBytes != file.SizeBytes || entry.ModifiedAt.ToUnixTimeMilliseconds() != file.ModifiedAt.ToUnixTimeMilliseconds() =>
                    new FileStateDto(path, FileStates.Pending),
                { State: FileState.Indexed, Id: { } id } => FileStateDto.Indexed(path, id.Value, entry.UpdatedAt),
                _ => new FileStateDto(path, FileStates.Failed, null, entry.Reason, entry.UpdatedAt),
            });
        }

        return states;
    }

    private async Task<string?> ResolveAsync(ImageId id, CancellationToken ct)
    {
        // Stat, not File.Exists: a file replaced by a link since it was indexed is not followed.
        var rel = await catalog.FindPathAsync(id, ct).ConfigureAwait(false);
        return rel is not null && library.Stat(rel) is not null ? library.ToFull(rel) : null;
    }

    private SearchResponse ToResponse(int top, BoundingBox? box, SearchResult result) =>
        new(embedder.Model.Key, top, box?.ToString(), Math.Round(result.EmbedMilliseconds, 2), Math.Round(result.SearchMilliseconds, 3),
            result.Hits.Select(h => HitDto.From(h, rerankOptions.Value.MinInliers)).ToList(),
            Phases: result.Phases.Rounded(3));

    internal static string ContentTypeFor(string path) => Path.GetExtension(path).ToLowerInvariant() switch
    {
        ".jpg" or ".jpeg" or ".jpe" => "image/jpeg",
        ".png" => "image/png",
        ".webp" => "image/webp",
        ".gif" => "image/gif",
        ".tif" or ".tiff" => "image/tiff",
        ".heic" or ".heif" => "image/heif",
        ".avif" => "image/avif",
        _ => "application/octet-stream",
    };
}
