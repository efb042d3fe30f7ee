using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace ImageSearch.Qdrant;

/// <summary>
/// Runs <see cref="QdrantVectorStore.EnsureCollectionAsync"/> when the host starts, so a collection that
/// belongs to another model stops the host at once instead of failing the first request. Qdrant being
/// unreachable does not stop it (the store tries again on first use, and the health check reports it):
/// services and Qdrant often start together.
/// </summary>
internal sealed partial class QdrantCollectionInitializer(QdrantVectorStore store, ILogger<QdrantCollectionInitializer> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            await store.EnsureCollectionAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (QdrantUnavailableException ex)
        {
            LogUnavailable(logger, ex, store.Endpoint, store.Collection);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(1, LogLevel.Warning, "Qdrant at {Endpoint} is unavailable at startup; collection {Collection} will be checked on first use")]
    private static partial void LogUnavailable(ILogger logger, Exception exception, Uri endpoint, string collection);
}
