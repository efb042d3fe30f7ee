using Microsoft.AspNetCore.Http.HttpResults;

namespace ImageSearch.Api;

/// <summary>
/// What became of one file of the library. <see cref="State"/> is one of <see cref="FileStates"/>:
/// indexed (with the image's <see cref="Id"/> and URLs), pending (on disk, not yet indexed),
/// failed (with <see cref="Reason"/>) or missing (no such file).
/// </summary>
public sealed record FileStateDto(string Path, string State, string? Id = null, string? Reason = null, DateTimeOffset? UpdatedAt = null,
    string? ImageUrl = null, string? ThumbnailUrl = null)
{
    public static FileStateDto Indexed(string path, string id, DateTimeOffset updatedAt) =>
        new(path, FileStates.Indexed, id, null, updatedAt, $"/api/images/{id}", $"/api/images/{id}/thumbnail");
}

/// <summary>The values of <see cref="FileStateDto.State"/>.</summary>
public static class FileStates
{
    public const string Indexed = "indexed";
    public const string Pending = "pending";
    public const string Failed = "failed";
    public const string Missing = "missing";

    /// <summary>
    /// Which of two answers for one path wins when several query services answer: an index that
    /// settled the file knows more than one that has not seen it.
    /// </summary>
    public static int Rank(string state) => state switch
    {
        Indexed => 3,
        Failed => 2,
        Pending => 1,
        _ => 0,
    };
}

/// <summary>Answer of <c>GET /api/files</c>.</summary>
public sealed record FileStatesResponse(IReadOnlyList<FileStateDto> Files);

/// <summary><c>GET /api/files?path=a.jpg&amp;path=b.jpg</c>: the state of library files, e.g. of uploads being ingested.</summary>
public static class FilesApi
{
    /// <summary>Most paths one request may ask about.</summary>
    public const int MaxPaths = 100;

    public static IEndpointRouteBuilder MapFilesApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/files", GetFilesAsync).WithTags("Images");
        return app;
    }

    internal static async Task<Results<Ok<FileStatesResponse>, ProblemHttpResult>> GetFilesAsync(HttpRequest request, ISearchBackend backend, CancellationToken ct)
    {
        var paths = request.Query["path"];
        if (paths.Count is 0 or > MaxPaths)
        {
            return SearchApi.Problem(StatusCodes.Status400BadRequest, "Bad paths", $"Ask about 1 to {MaxPaths} files with repeated 'path' parameters; got {paths.Count}.");
        }

        foreach (var path in paths)
        {
            if (!IsLibraryPath(path))
            {
                return SearchApi.Problem(StatusCodes.Status400BadRequest, "Bad path", $"'{path}' is not a library-relative path ('/' separators, no '..').");
            }
        }

        var states = await backend.GetFileStatesAsync([.. paths.Select(p => p!)], ct).ConfigureAwait(false);
        return TypedResults.Ok(new FileStatesResponse(states));
    }

    /// <summary>A relative path with '/' separators that stays inside the library.</summary>
    internal static bool IsLibraryPath(string? path) =>
        !string.IsNullOrEmpty(path) && path.Length <= 4096 && !path.StartsWith('/') &&
        !path.Contains('\\', StringComparison.Ordinal) && !path.Contains('\0', StringComparison.Ordinal) &&
        path.Split('/').All(s => s.Length > 0 && s != "." && s != "..");
}
