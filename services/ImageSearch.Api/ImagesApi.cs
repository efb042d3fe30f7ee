using ImageSearch.Core;
using Microsoft.AspNetCore.Http.HttpResults;

namespace ImageSearch.Api;

/// <summary>One indexed image; <see cref="AddedAt"/> is when its content was first indexed. URLs are relative to the gateway.</summary>
public sealed record ImageDto(string Id, string Path, int Width, int Height, long SizeBytes, DateTimeOffset AddedAt, string ImageUrl, string ThumbnailUrl)
{
    public static ImageDto From(string path, long sizeBytes, VectorRecord record) =>
        new(record.Id.Value, path, record.Payload.Width, record.Payload.Height, sizeBytes, record.Payload.AddedAt,
            $"/api/images/{record.Id.Value}", $"/api/images/{record.Id.Value}/thumbnail");
}

/// <summary>Answer of <c>GET /api/images/{id}/files</c>: the library files holding the image.</summary>
public sealed record ImageFilesResponse(string Id, IReadOnlyList<string> Files);

/// <summary>Answer of <c>GET /api/images?recent=N</c>.</summary>
public sealed record ImageListResponse(IReadOnlyList<ImageDto> Images);

/// <summary>
/// <c>GET /api/images?recent=24</c> (recently added images), <c>GET /api/images/{id}</c> (the
/// original file) and <c>GET /api/images/{id}/thumbnail</c>.
/// </summary>
public static class ImagesApi
{
    /// <summary>Most images <c>recent</c> may ask for.</summary>
    public const int MaxRecent = 200;

    private const int DefaultRecent = 24;
    private const int DefaultThumbnail = 256;
    private const int MaxThumbnail = 1024;

    public static IEndpointRouteBuilder MapImagesApi(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api/images").WithTags("Images");
        group.MapGet("/", ListRecentAsync);
        group.MapGet("/{id}", GetImageAsync);
        group.MapGet("/{id}/thumbnail", GetThumbnailAsync);
        group.MapGet("/{id}/files", GetFilesAsync);
        return app;
    }

    internal static async Task<Results<Ok<ImageListResponse>, ProblemHttpResult>> ListRecentAsync(string? recent, ISearchBackend backend, CancellationToken ct)
    {
        var limit = DefaultRecent;
        if (recent is not null && (!int.TryParse(recent, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out limit) || limit is < 1 or > MaxRecent))
        {
            return SearchApi.Problem(StatusCodes.Status400BadRequest, "Invalid recent", $"recent must be an integer between 1 and {MaxRecent}; got '{recent}'.");
        }

        return TypedResults.Ok(new ImageListResponse(await backend.ListRecentAsync(limit, ct).ConfigureAwait(false)));
    }

    /// <summary>Most files listed for one image (copies of one photo share it).</summary>
    public const int MaxFiles = 1000;

    internal static async Task<Results<PhysicalFileHttpResult, FileContentHttpResult, ProblemHttpResult>> GetImageAsync(
        string id, ISearchBackend backend, HttpContext http, CancellationToken ct)
    {
        if (!ImageId.TryParse(id, out var imageId))
        {
            return InvalidId(id);
        }

        // The library's files are served as they are: whatever a file holds besides the image (a
        // polyglot), a browser must neither run it as a page nor sniff it into another type.
        http.Response.Headers.ContentSecurityPolicy = "default-src 'none'; sandbox";

        return await backend.GetImageAsync(imageId, ct).ConfigureAwait(false) switch
        {
            { FilePath: { } path } image => TypedResults.PhysicalFile(path, image.ContentType, enableRangeProcessing: true),
            { Bytes: { } bytes } image => TypedResults.File(bytes, image.ContentType),
            _ => NotFound(id),
        };
    }

    internal static async Task<Results<FileContentHttpResult, ProblemHttpResult>> GetThumbnailAsync(
        string id, int? size, ISearchBackend backend, HttpContext http, CancellationToken ct)
    {
        var side = size ?? DefaultThumbnail;
        if (side is < 16 or > MaxThumbnail)
        {
            return SearchApi.Problem(StatusCodes.Status400BadRequest, "Invalid size", $"size must be between 16 and {MaxThumbnail}.");
        }

        if (!ImageId.TryParse(id, out var imageId))
        {
            return InvalidId(id);
        }

        var jpeg = await backend.GetThumbnailAsync(imageId, side, ct).ConfigureAwait(false);
        if (jpeg is null)
        {
            return NotFound(id);
        }

        // Ids are content hashes: the thumbnail of an id never changes.
        http.Response.Headers.CacheControl = "public, max-age=31536000, immutable";
        return TypedResults.File(jpeg, "image/jpeg");
    }

    internal static async Task<Results<Ok<ImageFilesResponse>, ProblemHttpResult>> GetFilesAsync(string id, int? limit, ISearchBackend backend, CancellationToken ct)
    {
        if (!ImageId.TryParse(id, out var imageId))
        {
            return InvalidId(id);
        }

        if (limit is < 1 or > MaxFiles)
        {
            return SearchApi.Problem(StatusCodes.Status400BadRequest, "Invalid limit", $"limit must be between 1 and {MaxFiles}.");
        }

        return TypedResults.Ok(new ImageFilesResponse(imageId.Value, await backend.GetFilePathsAsync(imageId, limit ?? MaxFiles, ct).ConfigureAwait(false)));
    }

    internal static ProblemHttpResult InvalidId(string id) =>
        SearchApi.Problem(StatusCodes.Status400BadRequest, "Invalid image id", $"'{id}' is not an image id (32 lowercase hex characters).");

    internal static ProblemHttpResult NotFound(string id) =>
        SearchApi.Problem(StatusCodes.Status404NotFound, "Image not found", $"No file of the library holds image {id}.");
}
