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
    private readonly string root = Directory.CreateTempSubdirectory("outage-").FullName;
    private string library = "";
    private string state = "";
    private HttpClient client = null!;

    public async Task InitializeAsync()
    {
        library = Directory.CreateDirectory(Path.Combine(root, "library")).FullName;
        state = Path.Combine(root, "state");
        foreach (var f in AllPhotos().Take(Photos))
        {
            File.Copy(f, Path.Combine(library, Path.GetFileName(f)));
        }

        var port = TestPaths.FreePort();
        var (code, stdout, stderr) = await RunScriptAsync("cluster.sh", "up", "--watch", library, "--workers", "1", "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--db", Path.Combine(root, "db"), "--state", state).ConfigureAwait(false);
        if (code != 0)
        {
            await RunScriptAsync("cluster.sh", "down", "--state", state).ConfigureAwait(false);
            Assert.Fail($"cluster up failed:\n{stdout}\n{stderr}");
        }

        client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/"), Timeout = TimeSpan.FromMinutes(1) };
    }

    public async Task DisposeAsync()
    {
        client.Dispose();
        await RunScriptAsync("cluster.sh", "down", "--state", state).ConfigureAwait(false);
        Directory.Delete(root, recursive: true);
    }

    [Fact]
    public async Task With_the_broker_down_searches_go_on_and_what_arrives_meanwhile_is_ingested_once_it_is_back()
    {
        await WaitForAsync(s => s.GetProperty("indexed").GetInt64() == Photos, $"{Photos} photos to be indexed");

        // Photos arrive and the broker goes down while they are being ingested.
        var arriving = AllPhotos().Skip(Photos).Take(8).ToList();
        foreach (var f in arriving.Take(4))
        {
            File.Copy(f, Path.Combine(library, Path.GetFileName(f)));
        }

        var (code, _, stderr) = await RunScriptAsync("rabbitmq.sh", "stop", "--dir", Path.Combine(state, "rabbitmq"), "--name", "imagesearch-cluster");
        Assert.True(code == 0, stderr);

        // Meanwhile: more photos and broken files arrive in the folder, and one photo by upload.
        foreach (var f in arriving.Skip(4))
        {
            File.Copy(f, Path.Combine(library, Path.GetFileName(f)));
        }

        await File.WriteAllBytesAsync(Path.Combine(library, "truncated.jpg"), await File.ReadAllBytesAsync(Path.Combine(TestPaths.Variants, "broken-truncated.jpg")));
        await File.WriteAllTextAsync(Path.Combine(library, "page.png"), "<!doctype html><p>not an image</p>");
        var uploaded = AllPhotos().Skip(Photos + arriving.Count).First();
        var upload = await client.PostAsync("api/images", UploadTests.Form((Path.GetFileName(uploaded), await File.ReadAllBytesAsync(uploaded))));
        Assert.Equal(HttpStatusCode.Accepted, upload.StatusCode);

        // Searches and status answer from the query service, which needs no broker to search.
        foreach (var f in AllPhotos().Take(4))
        {
            using var form = new MultipartFormDataContent { { new ByteArrayContent(await File.ReadAllBytesAsync(f)), "image", "q.jpg" } };
            var response = await client.PostAsync("api/search", form);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(Path.GetFileName(f), (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("hits")[0].GetProperty("path").GetString());
        }

        var during = await client.GetFromJsonAsync<JsonElement>("api/status");
        Assert.InRange(during.GetProperty("indexed").GetInt64(), Photos, Photos + 4);
        Assert.Equal(JsonValueKind.Null, during.GetProperty("queues").ValueKind); // the management API is down too

        // Back up: nobody restarts the services; they reconnect and catch up.
        (code, _, stderr) = await RunScriptAsync("rabbitmq.sh", "start", "--dir", Path.Combine(state, "rabbitmq"), "--name", "imagesearch-cluster");
        Assert.True(code == 0, stderr);
        var total = Photos + arriving.Count + 1;
        await WaitForAsync(s => s.GetProperty("indexed").GetInt64() == total && s.GetProperty("failed").GetInt64() == 2 && s.GetProperty("files").GetInt64() == total + 2,
            $"{total} photos indexed and 2 failures recorded after the outage");

        var status = await client.GetFromJsonAsync<JsonElement>("api/status");
        var reasons = status.GetProperty("failures").EnumerateArray().ToDictionary(f => f.GetProperty("path").GetString()!, f => f.GetProperty("reason").GetString()!);
        Assert.Contains("Corrupt", reasons["truncated.jpg"], StringComparison.Ordinal);
        Assert.Contains("Not a recognised image format", reasons["page.png"], StringComparison.Ordinal);
        foreach (var f in arriving.Append(uploaded))
        {
            using var form = new MultipartFormDataContent { { new ByteArrayContent(await File.ReadAllBytesAsync(f)), "image", "q.jpg" } };
            var hits = (await (await client.PostAsync("api/search", form)).Content.ReadFromJsonAsync<JsonElement>()).GetProperty("hits");
            Assert.EndsWith(Path.GetFileName(f), hits[0].GetProperty("path").GetString(), StringComparison.Ordinal);
            Assert.Equal(hits.GetArrayLength(), hits.EnumerateArray().Select(h => h.GetProperty("id").GetString()).Distinct().Count());
        }

        // The broken files are kept, with their reasons, in the ingestion error queue.
        await WaitForAsync(s => s.TryGetProperty("queues", out var q) && q.ValueKind == JsonValueKind.Array &&
            q.EnumerateArray().Any(x => x.GetProperty("name").GetString() == "ingest-failed" && x.GetProperty("messages").GetInt64() == 2), "the error queue to hold both broken files");
    }

    private static IEnumerable<string> AllPhotos() => Directory.GetFiles(TestPaths.Photos, "*.jpg").Order(StringComparer.Ordinal);

    private async Task WaitForAsync(Func<JsonElement, bool> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddMinutes(4); // bounds a broken run only
        JsonElement last = default;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                last = await client.GetFromJsonAsync<JsonElement>("api/status").ConfigureAwait(false);
                if (condition(last))
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // A backend briefly unreachable.
            }

            await Task.Delay(250).ConfigureAwait(false);
        }

        var logs = string.Join("\n", Directory.GetFiles(Path.Combine(state, "logs")).Select(f => $"--- {Path.GetFileName(f)}\n{string.Join('\n', File.ReadLines(f).TakeLast(10).Select(l => l.Length > 400 ? l[..400] : l))}"));
        throw new TimeoutException($"Gave up waiting for {what}; last status {last}.\n{logs}");
    }

    private static Task<(int Code, string Stdout, string Stderr)> RunScriptAsync(string script, params string[] args) =>
        TestPaths.RunProcessAsync("bash", [Path.Combine(TestPaths.Repo, "scripts", script), .. args],
            new Dictionary<string, string> { ["IMAGESEARCH_SKIP_SETUP"] = "1" });
}

/// <summary>Tests that start a whole cluster (broker and five processes) run one at a time: two at once on a small machine only test the machine.</summary>
[CollectionDefinition(nameof(ClusterCollection))]
public sealed class ClusterCollection;
