
namespace ImageSearch.Api;

public sealed record FailureDto(string Path, string? Reason, DateTimeOffset At);

/// <summary>
/// Status. <see cref="Queues"/> (depth and consumers per queue) and <see cref="Workers"/> (consumers of
/// the ingest queue) are filled where a RabbitMQ management API is configured; pending then
/// counts the messages waiting in the ingest and indexer queues. QueueWait*: how long recent images
/// waited in the ingest queue before a worker took them (from the last 10,000). <see cref="Upload"/>:
/// the upload settings, where this process takes uploads (the gateway). <see cref="LastIndexedAt"/>: when
/// the index last took in images (the latest over the backends; null when none has since it started).
/// </summary>
public sealed record StatusResponse(string Model, string Device, int Dimensions, long Indexed, long Files, long Failed, int Pending,
    IReadOnlyList<FailureDto> Failures, int? Workers = null, IReadOnlyList<QueueDto>? Queues = null,
    double? QueueWaitP50Ms = null, double? QueueWaitP99Ms = null, UploadInfo? Upload = null, DateTimeOffset? LastIndexedAt = null);

/// <summary><c>GET /api/status</c>: what is indexed, pending and failed (with reasons), and which model.</summary>
public static class StatusApi
{
    public static IEndpointRouteBuilder MapStatusApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/status", async (ISearchBackend backend, QueueMonitor queues, HttpContext http, CancellationToken ct) =>
        {
            var status = await backend.GetStatusAsync(ct).ConfigureAwait(false) with { Upload = UploadApi.Describe(http.RequestServices) };
            if (await queues.GetQueuesAsync(ct).ConfigureAwait(false) is { } list)
            {
                var pipeline = list.Where(q => q.Name is "ingest" or "indexer").ToList();
                status = status with
                {
                    Queues = list,
                    Workers = list.FirstOrDefault(q => q.Name == "ingest")?.Consumers ?? 0,
                    Pending = (int)Math.Min(int.MaxValue, status.Pending + pipeline.Sum(q => q.Messages)),
                };
            }

            return TypedResults.Ok(status);
        }).WithTags("Status");
        return app;
    }
}
