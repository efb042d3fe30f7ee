using ImageSearch.Core;
using ImageSearch.Pipeline;
using Microsoft.AspNetCore.Http.HttpResults;

namespace ImageSearch.Gateway;

/// <summary><c>GET /api/images/{id}</c> (the original file) and <c>GET /api/images/{id}/thumbnail</c>.</summary>
public static class ImagesApi
{
    private const int DefaultThumbnail = 256;
    private const int MaxThumbnail = 1024;

    public static IEndpointRouteBuilder MapImagesApi(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api/images").WithTags("Images");
        group.MapGet("/{id}", GetImageAsync);
        group.MapGet("/{id}/thumbnail", GetThumbnailAsync);
        return app;
    }

    internal static async Task<Results<PhysicalFileHttpResult, ProblemHttpResult>> GetImageAsync(
        string id, ICatalog catalog, FolderLibrary library, CancellationToken ct)
    {
        var (path, problem) = await ResolveAsync(id, catalog, library, ct).ConfigureAwait(false);
        if (problem is not null)
        {
            return problem;
        }

        return TypedResults.PhysicalFile(path!, ContentTypeFor(path!), enableRangeProcessing: true);
    }

    internal static async Task<Results<FileContentHttpResult, ProblemHttpResult>> GetThumbnailAsync(
        string id, int? size, ICatalog catalog, FolderLibrary library, IImageDecoder decoder, HttpContext http, CancellationToken ct)
    {
        var side = size ?? DefaultThumbnail;
        if (side is < 16 or > MaxThumbnail)
        {
            return SearchApi.Problem(StatusCodes.Status400BadRequest, "Invalid size", $"size must be between 16 and {MaxThumbnail}.");
        }

        var (path, problem) = await ResolveAsync(id, catalog, library, ct).ConfigureAwait(false);
        if (problem is not null)
        {
            return problem;
        }

        var bytes = await File.ReadAllBytesAsync(path!, ct).ConfigureAwait(false);
        var jpeg = decoder.Thumbnail(bytes, side);

        // Ids are content hashes: the thumbnail of an id never changes.
        http.Response.Headers.CacheControl = "public, max-age=31536000, immutable";
        return TypedResults.File(jpeg, "image/jpeg");
    }

    private static async Task<(string? Path, ProblemHttpResult? Problem)> ResolveAsync(string id, ICatalog catalog, FolderLibrary library, CancellationToken ct)
    {
        if (!ImageId.TryParse(id, out var imageId))
        {
            return (null, SearchApi.Problem(StatusCodes.Status400BadRequest, "Invalid image id", $"'{id}' is not an image id (32 lowercase hex characters)."));
        }

        var rel = await catalog.FindPathAsync(imageId, ct).ConfigureAwait(false);
        var full = rel is null ? null : library.ToFull(rel);
        if (full is null || !File.Exists(full))
        {
            return (null, SearchApi.Problem(StatusCodes.Status404NotFound, "Image not found", $"No file of the library holds image {id}."));
        }

        return (full, null);
    }

    private static string ContentTypeFor(string path) => Path.GetExtension(path).ToLowerInvariant() switch
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
