
namespace ImageSearch.Api;

public sealed record FailureDto(string Path, string? Reason, DateTimeOffset At);

public sealed record StatusResponse(string Model, string Device, int Dimensions, long Indexed, long Files, long Failed, int Pending, IReadOnlyList<FailureDto> Failures);

/// <summary><c>GET /api/status</c>: what is indexed, pending and failed (with reasons), and which model.</summary>
public static class StatusApi
{
    public static IEndpointRouteBuilder MapStatusApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/status", async (ISearchBackend backend, CancellationToken ct) =>
            TypedResults.Ok(await backend.GetStatusAsync(ct).ConfigureAwait(false))).WithTags("Status");
        return app;
    }
}
