using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace ImageSearch.Qdrant;

/// <summary>
/// Healthy when <see cref="QdrantVectorStore.CheckReadyAsync"/> passes: Qdrant's <c>GET /readyz</c>
/// answers 200 and the collection is there and belongs to the model. Unhealthy (with the exception)
/// otherwise.
/// </summary>
public sealed class QdrantHealthCheck(QdrantVectorStore store) : IHealthCheck
{
    /// <inheritdoc />
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        try
        {
            await store.CheckReadyAsync(cancellationToken).ConfigureAwait(false);
            return HealthCheckResult.Healthy($"Qdrant collection {store.Collection} at {store.Endpoint} is ready.");
        }
        catch (Exception ex) when (ex is QdrantException or InvalidOperationException)
        {
            return HealthCheckResult.Unhealthy($"Qdrant collection {store.Collection} at {store.Endpoint} is not usable: {ex.Message}", ex);
        }
    }
}
