using System.Diagnostics;
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
    private readonly string root = Directory.CreateTempSubdirectory("cluster-").FullName;
    private string library = "";
    private string state = "";
    private HttpClient client = null!;

    public async Task InitializeAsync()
    {
        library = Directory.CreateDirectory(Path.Combine(root, "library")).FullName;
        state = Path.Combine(root, "state");
        foreach (var f in Directory.GetFiles(TestPaths.Photos, "*.jpg").Order(StringComparer.Ordinal).Take(Photos))
        {
            File.Copy(f, Path.Combine(library, Path.GetFileName(f)));
        }

        var port = TestPaths.FreePort();
        var (code, stdout, stderr) = await RunScriptAsync("cluster.sh", "up", "--watch", library, "--workers", "3", "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--db", Path.Combine(root, "db"), "--state", state).ConfigureAwait(false);
        if (code != 0)
        {
            // xunit does not call DisposeAsync when InitializeAsync fails: stop what did start here.
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
    public async Task Photos_dropped_in_the_folder_become_searchable_exactly_once_through_the_gateway_despite_a_killed_worker_and_a_broker_restart()
    {
        // Everything present at start, ingested by three competing workers.
        await WaitForAsync(s => s.Indexed == Photos && s.Files == Photos, $"{Photos} photos to be indexed");

        // More photos arrive; while they are being ingested a worker dies hard and the broker restarts.
        var more = Directory.GetFiles(TestPaths.Photos, "*.jpg").Order(StringComparer.Ordinal).Skip(Photos).Take(24).ToList();
        foreach (var f in more)
        {
            File.Copy(f, Path.Combine(library, Path.GetFileName(f)));
        }

        KillWorker("ingest-1");
        var (code, _, stderr) = await RunScriptAsync("rabbitmq.sh", "restart", "--dir", Path.Combine(state, "rabbitmq"), "--name", "imagesearch-cluster");
        Assert.True(code == 0, stderr);

        // Nothing lost, nothing twice: every file indexed once (ids are content hashes, so a
        // redelivered message cannot add a second point), and each photo finds itself first.
        var total = Photos + more.Count;
        await WaitForAsync(s => s.Indexed == total && s.Files == total && s.Failed == 0, $"{total} photos to be indexed after the outage");
        foreach (var f in more.Take(6).Concat(Directory.GetFiles(library).Order(StringComparer.Ordinal).Take(3)))
        {
            using var form = new MultipartFormDataContent { { new ByteArrayContent(await File.ReadAllBytesAsync(f)), "image", "q.jpg" } };
            var hits = (await (await client.PostAsync("api/search", form)).Content.ReadFromJsonAsync<JsonElement>()).GetProperty("hits");
            Assert.Equal(Path.GetFileName(f), hits[0].GetProperty("path").GetString());
            Assert.Equal(hits.GetArrayLength(), hits.EnumerateArray().Select(h => h.GetProperty("id").GetString()).Distinct().Count());
        }

        // A corrupt file is reported with its reason and does not disturb the index.
        await File.WriteAllBytesAsync(Path.Combine(library, "corrupt.jpg"), await File.ReadAllBytesAsync(Path.Combine(TestPaths.Variants, "broken-truncated.jpg")));
        await WaitForAsync(s => s.Failed == 1, "the corrupt file to be reported");
        var status = await client.GetFromJsonAsync<JsonElement>("api/status");
        var failure = status.GetProperty("failures")[0];
        Assert.Equal("corrupt.jpg", failure.GetProperty("path").GetString());
        Assert.Contains("Corrupt", failure.GetProperty("reason").GetString(), StringComparison.Ordinal);
        Assert.Equal(total, status.GetProperty("indexed").GetInt64());
        Assert.True(status.GetProperty("queueWaitP99Ms").GetDouble() >= status.GetProperty("queueWaitP50Ms").GetDouble());

        // Status reads the broker: two live workers (one of three was killed) and the refused file
        // kept in the ingestion error queue. The management API refreshes its figures every few seconds.
        await WaitForStatusAsync(s => s.GetProperty("workers").GetInt32() == 2 &&
            s.GetProperty("queues").EnumerateArray().Any(q => q.GetProperty("name").GetString() == "ingest-failed" && q.GetProperty("messages").GetInt64() == 1),
            "status to show 2 workers and the error queue holding the corrupt file");

        // An upload through the gateway lands in the watched folder (the gateway has it too) and goes
        // the way of any file: watcher, workers, query service.
        var extra = Directory.GetFiles(TestPaths.Photos, "*.jpg").Order(StringComparer.Ordinal).Skip(total).First();
        using var upload = new MultipartFormDataContent { { new ByteArrayContent(await File.ReadAllBytesAsync(extra)), "image", Path.GetFileName(extra) } };
        var accepted = await client.PostAsync("api/images", upload);
        Assert.Equal(System.Net.HttpStatusCode.Accepted, accepted.StatusCode);
        var uploaded = (await accepted.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("images")[0].GetProperty("path").GetString()!;
        Assert.Equal("uploads/" + Path.GetFileName(extra), uploaded);
        await WaitForConditionAsync(async () => (await client.GetFromJsonAsync<JsonElement>($"api/files?path={Uri.EscapeDataString(uploaded)}"))
            .GetProperty("files")[0].GetProperty("state").GetString() == "indexed", $"{uploaded} to be indexed");
        using var query = new MultipartFormDataContent { { new ByteArrayContent(await File.ReadAllBytesAsync(extra)), "image", "q.jpg" } };
        var top = (await (await client.PostAsync("api/search", query)).Content.ReadFromJsonAsync<JsonElement>()).GetProperty("hits")[0];
        Assert.Equal(uploaded, top.GetProperty("path").GetString());
    }

    private static async Task WaitForConditionAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddMinutes(3);
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                if (await condition().ConfigureAwait(false))
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // The gateway answers 503 while the query service is briefly unreachable.
            }

            await Task.Delay(200).ConfigureAwait(false);
        }

        throw new TimeoutException($"Gave up waiting for {what}");
    }

    private async Task WaitForStatusAsync(Func<JsonElement, bool> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddMinutes(2);
        JsonElement last = default;
        while (DateTime.UtcNow < deadline)
        {
            last = await client.GetFromJsonAsync<JsonElement>("api/status").ConfigureAwait(false);
            if (last.TryGetProperty("queues", out var q) && q.ValueKind == JsonValueKind.Array && condition(last))
            {
                return;
            }

            await Task.Delay(500).ConfigureAwait(false);
        }

        throw new TimeoutException($"Gave up waiting for {what}; last status {last}");
    }

    private void KillWorker(string name)
    {
        foreach (var line in File.ReadAllLines(Path.Combine(state, "pids")))
        {
            var parts = line.Split(' ');
            if (parts[1] == name)
            {
                using var p = Process.GetProcessById(int.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture));
                p.Kill(); // SIGKILL: no chance to finish or acknowledge the batch in hand.
            }
        }
    }

    private sealed record Counts(long Indexed, long Files, long Failed);

    private async Task WaitForAsync(Func<Counts, bool> condition, string what)
    {
        // The deadline only bounds a broken run; no outcome depends on speed.
        var deadline = DateTime.UtcNow.AddMinutes(5);
        Counts? last = null;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                var s = await client.GetFromJsonAsync<JsonElement>("api/status").ConfigureAwait(false);
                last = new Counts(s.GetProperty("indexed").GetInt64(), s.GetProperty("files").GetInt64(), s.GetProperty("failed").GetInt64());
                if (condition(last))
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // The gateway answers 503 while the query service is briefly unreachable.
            }

            await Task.Delay(200).ConfigureAwait(false);
        }

        var logs = string.Join("\n", Directory.GetFiles(Path.Combine(state, "logs")).Select(f => $"--- {Path.GetFileName(f)}\n{string.Join('\n', File.ReadLines(f).TakeLast(15))}"));
        throw new TimeoutException($"Gave up waiting for {what}; last status {last}.\n{logs}");
    }

    // The test command already set everything up: the script must not rebuild what other tests run.
    private static Task<(int Code, string Stdout, string Stderr)> RunScriptAsync(string script, params string[] args) =>
        TestPaths.RunProcessAsync("bash", [Path.Combine(TestPaths.Repo, "scripts", script), .. args],
            new Dictionary<string, string> { ["IMAGESEARCH_SKIP_SETUP"] = "1" });
}
