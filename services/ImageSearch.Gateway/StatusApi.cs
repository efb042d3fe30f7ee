using ImageSearch.Core;
using ImageSearch.Pipeline;

namespace ImageSearch.Gateway;

public sealed record FailureDto(string Path, string? Reason, DateTimeOffset At);

public sealed record StatusResponse(string Model, string Device, int Dimensions, long Indexed, long Files, long Failed, int Pending, IReadOnlyList<FailureDto> Failures);

/// <summary><c>GET /api/status</c>: what is indexed, pending and failed (with reasons), and which model.</summary>
public static class StatusApi
{
    private const int MaxFailuresListed = 100;

    public static IEndpointRouteBuilder MapStatusApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/status", GetStatusAsync).WithTags("Status");
        return app;
    }

    internal static async Task<IResult> GetStatusAsync(IVectorStore store, ICatalog catalog, IEmbedder embedder, IngestionProgress progress, CancellationToken ct)
    {
        var counts = await catalog.CountsAsync(ct).ConfigureAwait(false);
        var failures = await catalog.ListAsync(FileState.Failed, MaxFailuresListed, ct).ConfigureAwait(false);
        return TypedResults.Ok(new StatusResponse(embedder.Model.Key, embedder.Device, embedder.Model.Dimensions,
            await store.CountAsync(ct).ConfigureAwait(false), counts.Files, counts.Failed, progress.Pending,
            failures.Select(f => new FailureDto(f.Path, f.Reason, f.UpdatedAt)).ToList()));
    }
}
