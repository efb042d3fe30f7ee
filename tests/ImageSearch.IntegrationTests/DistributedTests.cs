using System.Net.Http.Json;
using System.Text.Json;

namespace ImageSearch.IntegrationTests;

/// <summary>
/// The distributed topology started by <c>scripts/cluster.sh</c> (the same script as
/// <c>./imagesearch cluster up</c>): a real RabbitMQ broker, a query service, three ingest workers,
/// the watcher and the gateway, each a separate process on loopback.
/// </summary>
[Collection(nameof(ClusterCollection))]
public sealed class DistributedTests : IAsyncLifetime
{
    private const int Photos = 24;
    private LocalCluster cluster = null!;

    public async Task InitializeAsync() =>
        cluster = await LocalCluster.StartAsync("cluster", Directory.GetFiles(TestPaths.Photos, "*.jpg").Order(StringComparer.Ordinal).Take(Photos), workers: 3);

    public async Task DisposeAsync() => await cluster.DisposeAsync();

    [Fact]
    public async Task Photos_dropped_in_the_folder_become_searchable_exactly_once_through_the_gateway_despite_a_killed_worker_and_a_broker_restart()
    {
        // Everything present at start, ingested by three competing workers.
        await cluster.WaitForStatusAsync(s => Counts(s, Photos, Photos), $"{Photos} photos to be indexed");

        // More photos arrive; while they are being ingested a worker dies hard and the broker restarts.
        var more = Directory.GetFiles(TestPaths.Photos, "*.jpg").Order(StringComparer.Ordinal).Skip(Photos).Take(24).ToList();
        var dropped = DateTimeOffset.UtcNow;
        foreach (var f in more)
        {
            File.Copy(f, Path.Combine(cluster.Library, Path.GetFileName(f)));
        }

        cluster.Kill("ingest-1");
        await cluster.BrokerAsync("restart");

        // Nothing lost, nothing twice: every file indexed once (ids are content hashes, so a
        // redelivered message cannot add a second point), and each photo finds itself first.
        var total = Photos + more.Count;
        await cluster.WaitForStatusAsync(s => Counts(s, total, total, failed: 0), $"{total} photos to be indexed after the outage");
        foreach (var f in more.Take(6).Concat(Directory.GetFiles(cluster.Library).Order(StringComparer.Ordinal).Take(3)))
        {
            using var form = new MultipartFormDataContent { { new ByteArrayContent(await File.ReadAllBytesAsync(f)), "image", "q.jpg" } };
            using var response = await cluster.Client.PostAsync("api/search", form);
            var body = await response.Content.ReadFromJsonAsync<JsonElement>();
            var hits = body.GetProperty("hits");
            Assert.Equal(Path.GetFileName(f), hits[0].GetProperty("path").GetString());

            // The query service's phases reach the client through the gateway: it verified the candidates.
            Assert.True(body.GetProperty("phases").GetProperty("verifyMs").GetDouble() > 0, body.ToString());
            Assert.Contains("verify;", string.Join(", ", response.Headers.GetValues("Server-Timing")), StringComparison.Ordinal);
            Assert.Equal(hits.GetArrayLength(), hits.EnumerateArray().Select(h => h.GetProperty("id").GetString()).Distinct().Count());
        }

        // A corrupt file is reported with its reason and does not disturb the index.
        await File.WriteAllBytesAsync(Path.Combine(cluster.Library, "corrupt.jpg"), await File.ReadAllBytesAsync(Path.Combine(TestPaths.Variants, "broken-truncated.jpg")));
        await cluster.WaitForStatusAsync(s => s.GetProperty("failed").GetInt64() == 1, "the corrupt file to be reported");
        var status = await cluster.Client.GetFromJsonAsync<JsonElement>("api/status");
        var failure = status.GetProperty("failures")[0];
        Assert.Equal("corrupt.jpg", failure.GetProperty("path").GetString());
        Assert.Contains("Corrupt", failure.GetProperty("reason").GetString(), StringComparison.Ordinal);
        Assert.Equal(total, status.GetProperty("indexed").GetInt64());
        Assert.True(status.GetProperty("queueWaitP99Ms").GetDouble() >= status.GetProperty("queueWaitP50Ms").GetDouble());
        Assert.InRange(status.GetProperty("lastIndexedAt").GetDateTimeOffset(), dropped, DateTimeOffset.UtcNow); // the query service's, through the gateway

        // Status reads the broker: two live workers (one of three was killed) and the refused file
        // kept in the ingestion error queue. The management API refreshes its figures every few seconds.
        await cluster.WaitForStatusAsync(s => s.GetProperty("queues").ValueKind == JsonValueKind.Array && s.GetProperty("workers").GetInt32() == 2 &&
            s.GetProperty("queues").EnumerateArray().Any(q => q.GetProperty("name").GetString() == "ingest-failed" && q.GetProperty("messages").GetInt64() == 1),
            "status to show 2 workers and the error queue holding the corrupt file");

        // An upload through the gateway lands in the watched folder (the gateway has it too) and goes
        // the way of any file: watcher, workers, query service.
        var extra = Directory.GetFiles(TestPaths.Photos, "*.jpg").Order(StringComparer.Ordinal).Skip(total).First();
        using var upload = new MultipartFormDataContent { { new ByteArrayContent(await File.ReadAllBytesAsync(extra)), "image", Path.GetFileName(extra) } };
        var accepted = await cluster.Client.PostAsync("api/images", upload);
        Assert.Equal(System.Net.HttpStatusCode.Accepted, accepted.StatusCode);
        var uploaded = (await accepted.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("images")[0].GetProperty("path").GetString()!;
        Assert.Equal("uploads/" + Path.GetFileName(extra), uploaded);
        await cluster.WaitUntilAsync(async () => (await cluster.Client.GetFromJsonAsync<JsonElement>($"api/files?path={Uri.EscapeDataString(uploaded)}"))
            .GetProperty("files")[0].GetProperty("state").GetString() == "indexed", $"{uploaded} to be indexed");
        using var query = new MultipartFormDataContent { { new ByteArrayContent(await File.ReadAllBytesAsync(extra)), "image", "q.jpg" } };
        var top = (await (await cluster.Client.PostAsync("api/search", query)).Content.ReadFromJsonAsync<JsonElement>()).GetProperty("hits")[0];
        Assert.Equal(uploaded, top.GetProperty("path").GetString());
    }

    private static bool Counts(JsonElement s, long indexed, long files, long? failed = null) =>
        s.GetProperty("indexed").GetInt64() == indexed && s.GetProperty("files").GetInt64() == files && (failed is null || s.GetProperty("failed").GetInt64() == failed);
}
