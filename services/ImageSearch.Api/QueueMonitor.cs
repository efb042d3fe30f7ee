using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace ImageSearch.Api;

/// <summary>One queue of the broker: messages waiting (ready + unacknowledged) and its consumers.</summary>
public sealed record QueueDto(string Name, long Messages, long Unacknowledged, int Consumers);

/// <summary>Where to read queue depths. Section "Bus" (shared with the pipeline's bus settings).</summary>
public sealed class QueueMonitorOptions
{
    /// <summary>RabbitMQ management API base URL (http://user:password@host:15672/); unset = no queue figures.</summary>
    public string? ManagementUrl { get; set; }
}

/// <summary>
/// Reads queue depths and consumer counts from the RabbitMQ management HTTP API, for status: how
/// much ingestion is pending and how many workers consume it. Best effort: null when unavailable.
/// </summary>
public sealed partial class QueueMonitor(IHttpClientFactory clients, IOptions<QueueMonitorOptions> options, ILogger<QueueMonitor> logger, TimeProvider? clock = null)
{
    public const string HttpClientName = "rabbitmq-management";

    /// <summary>
    /// How long one answer of the management API is reused. The broker refreshes its queue
    /// statistics every 5 s (collect_statistics_interval), so asking more often only costs the
    /// broker CPU that ingestion needs: a status page polled by many clients makes one request.
    /// </summary>
    public static readonly TimeSpan CacheFor = TimeSpan.FromSeconds(2);

    private readonly TimeProvider time = clock ?? TimeProvider.System;
    private readonly SemaphoreSlim refresh = new(1, 1);
    private Snapshot? cached;

    public async Task<IReadOnlyList<QueueDto>?> GetQueuesAsync(CancellationToken ct)
    {
        if (options.Value.ManagementUrl is not { Length: > 0 })
        {
            return null;
        }

        if (Fresh() is { } hit)
        {
            return hit.Queues;
        }

        await refresh.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            // Callers that waited here get the answer the first one fetched.
            if (Fresh() is { } shared)
            {
                return shared.Queues;
            }

            var queues = await FetchAsync(ct).ConfigureAwait(false);
            Volatile.Write(ref cached, new Snapshot(time.GetTimestamp(), queues));
            return queues;
        }
        finally
        {
            refresh.Release();
        }
    }

    private Snapshot? Fresh() =>
        Volatile.Read(ref cached) is { } c && time.GetElapsedTime(c.At) < CacheFor ? c : null;

    /// <summary>One answer and when it was fetched; replaced whole, so readers never see half of one.</summary>
    private sealed record Snapshot(long At, IReadOnlyList<QueueDto>? Queues);

    private async Task<IReadOnlyList<QueueDto>?> FetchAsync(CancellationToken ct)
    {
        var url = options.Value.ManagementUrl!;

        try
        {
            var baseUri = new Uri(url.EndsWith('/') ? url : url + "/");
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(baseUri, "api/queues/%2F?columns=name,messages,messages_unacknowledged,consumers"));
            if (!string.IsNullOrEmpty(baseUri.UserInfo))
            {
                request.Headers.Authorization = new AuthenticationHeaderValue("Basic",
                    Convert.ToBase64String(Encoding.UTF8.GetBytes(Uri.UnescapeDataString(baseUri.UserInfo))));
            }

            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            cts.CancelAfter(TimeSpan.FromSeconds(3));
            using var response = await clients.CreateClient(HttpClientName).SendAsync(request, cts.Token).ConfigureAwait(false);
            response.EnsureSuccessStatusCode();
            var queues = await response.Content.ReadFromJsonAsync<JsonElement>(cts.Token).ConfigureAwait(false);
            return queues.EnumerateArray()
                .Select(q => new QueueDto(q.GetProperty("name").GetString() ?? "", Long(q, "messages"), Long(q, "messages_unacknowledged"), (int)Long(q, "consumers")))
                .Where(q => !q.Name.StartsWith("bus-", StringComparison.Ordinal)) // MassTransit's per-process reply queues
                .OrderBy(q => q.Name, StringComparer.Ordinal)
                .ToList();
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or JsonException or KeyNotFoundException && !ct.IsCancellationRequested)
        {
            LogUnavailable(logger, e);
            return null;
        }
    }

    private static long Long(JsonElement e, string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt64() : 0;

    [LoggerMessage(Level = LogLevel.Warning, Message = "RabbitMQ management API unavailable; status shows no queue figures")]
    private static partial void LogUnavailable(ILogger logger, Exception ex);
}
