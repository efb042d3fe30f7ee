using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace ImageSearch.IntegrationTests;

/// <summary>
/// RabbitMQ stopped (not restarted: down, for as long as the test takes) while the distributed
/// topology ingests and serves searches: searches and status keep answering, uploads are taken,
/// photos and broken files keep arriving; when the broker comes back every process reconnects by
/// itself and everything that arrived meanwhile is indexed exactly once, broken files recorded
/// with their reasons and kept in the ingestion error queue.
/// </summary>
[Collection(nameof(ClusterCollection))]
public sealed class BrokerOutageTests : IAsyncLifetime
{
    private const int Photos = 8;
    private LocalCluster cluster = null!;

    public async Task InitializeAsync() => cluster = await LocalCluster.StartAsync("outage", AllPhotos().Take(Photos), workers: 1);

    public async Task DisposeAsync() => await cluster.DisposeAsync();

    [Fact]
    public async Task With_the_broker_down_searches_go_on_and_what_arrives_meanwhile_is_ingested_once_it_is_back()
    {
        await cluster.WaitForStatusAsync(s => s.GetProperty("indexed").GetInt64() == Photos, $"{Photos} photos to be indexed");

        // Photos arrive and the broker goes down while they are being ingested.
        var arriving = AllPhotos().Skip(Photos).Take(8).ToList();
        foreach (var f in arriving.Take(4))
        {
            File.Copy(f, Path.Combine(cluster.Library, Path.GetFileName(f)));
        }

        await cluster.BrokerAsync("stop");

        // Meanwhile: more photos and broken files arrive in the folder, and one photo by upload.
        foreach (var f in arriving.Skip(4))
        {
            File.Copy(f, Path.Combine(cluster.Library, Path.GetFileName(f)));
        }

        await File.WriteAllBytesAsync(Path.Combine(cluster.Library, "truncated.jpg"), await File.ReadAllBytesAsync(Path.Combine(TestPaths.Variants, "broken-truncated.jpg")));
        await File.WriteAllTextAsync(Path.Combine(cluster.Library, "page.png"), "<!doctype html><p>not an image</p>");
        var uploaded = AllPhotos().Skip(Photos + arriving.Count).First();
        var upload = await cluster.Client.PostAsync("api/images", UploadTests.Form((Path.GetFileName(uploaded), await File.ReadAllBytesAsync(uploaded))));
        Assert.Equal(HttpStatusCode.Accepted, upload.StatusCode);

        // Searches and status answer from the query service, which needs no broker to search.
        foreach (var f in AllPhotos().Take(4))
        {
            using var form = new MultipartFormDataContent { { new ByteArrayContent(await File.ReadAllBytesAsync(f)), "image", "q.jpg" } };
            var response = await cluster.Client.PostAsync("api/search", form);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(Path.GetFileName(f), (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("hits")[0].GetProperty("path").GetString());
        }

        var during = await cluster.Client.GetFromJsonAsync<JsonElement>("api/status");
        Assert.InRange(during.GetProperty("indexed").GetInt64(), Photos, Photos + 4);
        Assert.Equal(JsonValueKind.Null, during.GetProperty("queues").ValueKind); // the management API is down too

        // Back up: nobody restarts the services; they reconnect and catch up.
        await cluster.BrokerAsync("start");
        var total = Photos + arriving.Count + 1;
        await cluster.WaitForStatusAsync(s => s.GetProperty("indexed").GetInt64() == total && s.GetProperty("failed").GetInt64() == 2 && s.GetProperty("files").GetInt64() == total + 2,
            $"{total} photos indexed and 2 failures recorded after the outage");

        var status = await cluster.Client.GetFromJsonAsync<JsonElement>("api/status");
        var reasons = status.GetProperty("failures").EnumerateArray().ToDictionary(f => f.GetProperty("path").GetString()!, f => f.GetProperty("reason").GetString()!);
        Assert.Contains("Corrupt", reasons["truncated.jpg"], StringComparison.Ordinal);
        Assert.Contains("Not a recognised image format", reasons["page.png"], StringComparison.Ordinal);
        foreach (var f in arriving.Append(uploaded))
        {
            using var form = new MultipartFormDataContent { { new ByteArrayContent(await File.ReadAllBytesAsync(f)), "image", "q.jpg" } };
            var hits = (await (await cluster.Client.PostAsync("api/search", form)).Content.ReadFromJsonAsync<JsonElement>()).GetProperty("hits");
            Assert.EndsWith(Path.GetFileName(f), hits[0].GetProperty("path").GetString(), StringComparison.Ordinal);
            Assert.Equal(hits.GetArrayLength(), hits.EnumerateArray().Select(h => h.GetProperty("id").GetString()).Distinct().Count());
        }

        // The broken files are kept, with their reasons, in the ingestion error queue.
        await cluster.WaitForStatusAsync(s => s.TryGetProperty("queues", out var q) && q.ValueKind == JsonValueKind.Array &&
            q.EnumerateArray().Any(x => x.GetProperty("name").GetString() == "ingest-failed" && x.GetProperty("messages").GetInt64() == 2), "the error queue to hold both broken files");
    }

    private static IEnumerable<string> AllPhotos() => Directory.GetFiles(TestPaths.Photos, "*.jpg").Order(StringComparer.Ordinal);
}
