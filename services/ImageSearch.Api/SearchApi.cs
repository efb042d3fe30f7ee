using System.Diagnostics;
using System.Globalization;
using ImageSearch.Core;
using ImageSearch.Pipeline;
using Microsoft.AspNetCore.Http.HttpResults;

namespace ImageSearch.Api;

/// <summary>One hit as the API returns it; URLs are relative to the gateway.</summary>
/// <summary>
/// A hit. <see cref="Inliers"/>: the feature matches that agree geometrically with the query when
/// the hit was verified by re-ranking (null otherwise); a hit with at least Rerank:MinInliers is a
/// verified match of the same scene or object, ranked ahead of unverified ones.
/// </summary>
public sealed record HitDto(string Id, float Score, string Path, int Width, int Height, long SizeBytes, DateTimeOffset AddedAt, string ImageUrl, string ThumbnailUrl,
    int? Inliers = null, bool Verified = false)
{
    public static HitDto From(SearchHit h, int minInliers) => new(h.Id.Value, h.Score, h.Payload.Path, h.Payload.Width, h.Payload.Height,
        h.Payload.SizeBytes, h.Payload.AddedAt, $"/api/images/{h.Id.Value}", $"/api/images/{h.Id.Value}/thumbnail", h.Inliers, h.Inliers >= minInliers);
}

/// <summary>
/// Search results. <see cref="Partial"/> when some backend failed or ran out of time; <see cref="Errors"/> says which.
/// <see cref="EmbedMs"/>: from the start of the search to the query's vector (decoding, the wait in the query
/// queue, the model); <see cref="SearchMs"/>: everything after it, split into <see cref="Phases"/>.
/// </summary>
public sealed record SearchResponse(string Model, int Top, string? Box, double EmbedMs, double SearchMs, IReadOnlyList<HitDto> Hits, bool Partial = false, IReadOnlyList<string>? Errors = null,
    SearchPhases? Phases = null);

/// <summary><c>POST /api/search</c> (multipart: image, box, top, exact, regions, expand, rerank) and <c>POST /api/search/by-id/{id}</c>.</summary>
public static class SearchApi
{
    public const int DefaultTop = 10;

    public static IEndpointRouteBuilder MapSearchApi(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api/search").WithTags("Search");
        group.MapPost("/", SearchAsync).DisableAntiforgery();
        group.MapPost("/batch", SearchBatchAsync).DisableAntiforgery();
        group.MapPost("/by-id/{id}", SearchByIdAsync);
        return app;
    }

    internal static async Task<Results<Ok<SearchResponse>, ProblemHttpResult>> SearchAsync(
        HttpRequest request, ISearchBackend backend, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        if (!request.HasFormContentType)
        {
            return NotMultipart("Send the query as multipart/form-data with the image in a file field named 'image' (optional fields: box=x,y,w,h, top, exact, regions, expand, rerank).");
        }

        var form = await request.ReadFormAsync(ct).ConfigureAwait(false);
        var file = form.Files.GetFile("image");
        if (file is null || file.Length == 0)
        {
            return Problem(StatusCodes.Status400BadRequest, "Missing image", "The form has no non-empty file field named 'image'.");
        }

        var (box, top, exact, problem) = ParseQueryFields(form["box"], form["top"], form["exact"]);
        if (problem is not null)
        {
            return problem;
        }

        if (ParseBool(form["regions"], "regions", out var regions) is { } badRegions)
        {
            return badRegions;
        }

        if (ParseInt(form["expand"], "expand", 0, SearchLimits.MaxExpand, 0, out var expand) is { } badExpand)
        {
            return badExpand;
        }

        if (ParseBool(form["rerank"], "rerank", out var rerank, fallback: true) is { } badRerank)
        {
            return badRerank;
        }

        var bytes = await ReadAllAsync(file, ct).ConfigureAwait(false);
        var formMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        var result = await backend.SearchAsync(bytes, box, top, exact, regions, expand, rerank, ct).ConfigureAwait(false);
        AddServerTiming(request.HttpContext.Response, formMs, result.EmbedMs, result.Phases, started);
        return TypedResults.Ok(result);
    }

    /// <summary>
    /// Sets the W3C <c>Server-Timing</c> header of a search (browsers' developer tools show it beside
    /// the request): reading the request (<c>form</c>), the embedding, each phase after it, and the
    /// handler's whole time (<c>total</c>); a figure not measured (null: a search by id has no form or
    /// embedding, a backend of an older version reports no phases) is left out, not given as 0. Time a
    /// client measures beyond <c>total</c> was spent outside the handler: in the server's queues,
    /// sending the answer, and on the wire.
    /// </summary>
    internal static void AddServerTiming(HttpResponse response, double? formMs, double? embedMs, SearchPhases? phases, long handlerStarted)
    {
        var metrics = new List<string>(7);
        Add("form", "read request", formMs);
        Add("embed", "decode + queue + model", embedMs);
        Add("knn", "nearest neighbours", phases?.NeighboursMs);
        Add("sift", "wait for the query's local features", phases?.QueryFeaturesWaitMs);
        Add("features", "read candidates' features", phases?.FeatureReadMs);
        Add("verify", "match and fit", phases?.VerifyMs);
        Add("total", "handler", Stopwatch.GetElapsedTime(handlerStarted).TotalMilliseconds);
        response.Headers["Server-Timing"] = string.Join(", ", metrics);

        void Add(string name, string description, double? ms)
        {
            if (ms is { } value)
            {
                metrics.Add(string.Create(CultureInfo.InvariantCulture, $"{name};desc=\"{description}\";dur={value:0.###}"));
            }
        }
    }

    /// <summary>Most images one batch request may carry.</summary>
    public const int MaxBatch = 64;

    /// <summary>
    /// Several queries in one request: repeated file fields <c>image</c>, and optionally as many
    /// <c>box</c> fields in the same order (empty for none); <c>top</c> and <c>exact</c> apply to all.
    /// </summary>
    internal static async Task<Results<Ok<BatchSearchResponse>, ProblemHttpResult>> SearchBatchAsync(
        HttpRequest request, ISearchBackend backend, CancellationToken ct)
    {
        if (!request.HasFormContentType)
        {
            return NotMultipart("Send the queries as multipart/form-data: repeated file fields 'image', optionally as many 'box' fields (x,y,w,h or empty) in the same order, and top, exact.");
        }

        var form = await request.ReadFormAsync(ct).ConfigureAwait(false);
        var files = form.Files.GetFiles("image");
        if (files.Count == 0 || files.Count > MaxBatch || files.Any(f => f.Length == 0))
        {
            return Problem(StatusCodes.Status400BadRequest, "Bad batch", $"Send between 1 and {MaxBatch} non-empty file fields named 'image'; got {files.Count}.");
        }

        var boxes = form["box"];
        if (boxes.Count != 0 && boxes.Count != files.Count)
        {
            return Problem(StatusCodes.Status400BadRequest, "Bad batch", $"Send no 'box' field or one per image ({files.Count}); got {boxes.Count}.");
        }

        var (_, top, exact, problem) = ParseQueryFields(default, form["top"], form["exact"]);
        if (problem is not null)
        {
            return problem;
        }

        var queries = new List<BatchQuery>(files.Count);
        for (var i = 0; i < files.Count; i++)
        {
            var parsed = ParseQueryFields(boxes.Count == 0 ? default : boxes[i], default, default);
            if (parsed.Problem is { } boxProblem)
            {
                return boxProblem;
            }

            queries.Add(new BatchQuery(await ReadAllAsync(files[i], ct).ConfigureAwait(false), parsed.Box));
        }

        return TypedResults.Ok(new BatchSearchResponse(await backend.SearchManyAsync(queries, top, exact, ct).ConfigureAwait(false)));
    }

    internal static async Task<Results<Ok<SearchResponse>, ProblemHttpResult>> SearchByIdAsync(
        string id, HttpRequest request, ISearchBackend backend, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        if (!ImageId.TryParse(id, out var imageId))
        {
            return Problem(StatusCodes.Status400BadRequest, "Invalid image id", $"'{id}' is not an image id (32 lowercase hex characters).");
        }

        var parsed = ParseQueryFields(default, request.Query["top"], request.Query["exact"]);
        if (parsed.Problem is { } problem)
        {
            return problem;
        }

        if (ParseBool(request.Query["rerank"], "rerank", out var rerank, fallback: true) is { } badRerank)
        {
            return badRerank;
        }

        var result = await backend.SearchByIdAsync(imageId, parsed.Top, parsed.Exact, rerank, ct).ConfigureAwait(false);
        if (result is null)
        {
            return Problem(StatusCodes.Status404NotFound, "Image not found", $"No indexed image has id {id}.");
        }

        AddServerTiming(request.HttpContext.Response, null, null, result.Phases, started);
        return TypedResults.Ok(result);
    }

    private static (BoundingBox? Box, int Top, bool Exact, ProblemHttpResult? Problem) ParseQueryFields(
        Microsoft.Extensions.Primitives.StringValues box, Microsoft.Extensions.Primitives.StringValues top, Microsoft.Extensions.Primitives.StringValues exact)
    {
        BoundingBox? parsedBox = null;
        if (!string.IsNullOrWhiteSpace(box))
        {
            try
            {
                parsedBox = BoundingBox.Parse(box.ToString());
            }
            catch (FormatException e)
            {
                return (null, 0, false, Problem(StatusCodes.Status400BadRequest, "Invalid box", e.Message));
            }
        }

        if (ParseInt(top, "top", 1, SearchLimits.MaxTop, DefaultTop, out var parsedTop) is { } badTop)
        {
            return (null, 0, false, badTop);
        }

        if (ParseBool(exact, "exact", out var parsedExact) is { } badExact)
        {
            return (null, 0, false, badExact);
        }

        return (parsedBox, parsedTop, parsedExact, null);
    }

    /// <summary>An optional integer field within [min, max]; absent gives <paramref name="fallback"/>. Returns the problem, if any.</summary>
    private static ProblemHttpResult? ParseInt(Microsoft.Extensions.Primitives.StringValues field, string name, int min, int max, int fallback, out int value)
    {
        value = fallback;
        if (string.IsNullOrWhiteSpace(field) ||
            (int.TryParse(field, NumberStyles.Integer, CultureInfo.InvariantCulture, out value) && value >= min && value <= max))
        {
            return null;
        }

        return Problem(StatusCodes.Status400BadRequest, $"Invalid {name}", string.Create(CultureInfo.InvariantCulture, $"{name} must be an integer between {min} and {max}; got '{field}'."));
    }

    /// <summary>An optional true/false field; absent is <paramref name="fallback"/>. Returns the problem, if any.</summary>
    private static ProblemHttpResult? ParseBool(Microsoft.Extensions.Primitives.StringValues field, string name, out bool value, bool fallback = false)
    {
        value = fallback;
        return string.IsNullOrWhiteSpace(field) || bool.TryParse(field, out value)
            ? null
            : Problem(StatusCodes.Status400BadRequest, $"Invalid {name}", $"{name} must be true or false; got '{field}'.");
    }

    private static ProblemHttpResult NotMultipart(string how) =>
        Problem(StatusCodes.Status415UnsupportedMediaType, "Expected multipart/form-data", how);

    private static async Task<byte[]> ReadAllAsync(IFormFile file, CancellationToken ct)
    {
        var bytes = new byte[file.Length];
        await using var stream = file.OpenReadStream();
        await stream.ReadExactlyAsync(bytes, ct).ConfigureAwait(false);
        return bytes;
    }

    internal static ProblemHttpResult Problem(int status, string title, string detail) =>
        TypedResults.Problem(detail: detail, statusCode: status, title: title);
}
