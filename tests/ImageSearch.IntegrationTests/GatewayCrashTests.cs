using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using Xunit.Abstractions;

namespace ImageSearch.IntegrationTests;

/// <summary>
/// The process that owns the embedded index (the gateway in embedded mode) is killed with SIGKILL
/// while it ingests a folder of real photos, several times; each time it is started again and
/// carries on by itself. At the end every file is indexed exactly once, every image that was
/// reported indexed before a kill is still indexed under the same id and found first by itself,
/// and nothing is duplicated. (The store alone is killed 25 times in KillDuringWritesTests.)
/// </summary>
public sealed class GatewayCrashTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int Kills = 5;
    private readonly string root = Directory.CreateTempSubdirectory("crash-").FullName;
    private string library = "";
    private List<string> files = [];

    // Small batches and frequent snapshots: more commits and snapshot saves for a kill to land in;
    // ExactThreshold 1: searches go through the HNSW graph rebuilt or replayed after each kill.
    private static readonly string[] Settings =
        ["--Ingest:BatchSize=2", "--Ingest:ConcurrentBatches=1", "--Index:Hnsw:SnapshotEvery=4", "--Index:Hnsw:ExactThreshold=1", "--RateLimit:Enabled=false"];

    public Task InitializeAsync()
    {
        library = Directory.CreateDirectory(Path.Combine(root, "library")).FullName;
        foreach (var f in Directory.GetFiles(TestPaths.Photos, "*.jpg").Concat(Directory.GetFiles(TestPaths.Variants))
                     .Where(f => !Path.GetFileName(f).StartsWith("broken-", StringComparison.Ordinal) && !Path.GetFileName(f).StartsWith("bomb-", StringComparison.Ordinal) && !f.EndsWith(".box", StringComparison.Ordinal)))
        {
            File.Copy(f, Path.Combine(library, Path.GetFileName(f)));
        }

        files = [.. Directory.GetFiles(library).Select(f => Path.GetFileName(f)).Order(StringComparer.Ordinal)];
        return Task.CompletedTask;
    }

    public Task DisposeAsync()
    {
        Directory.Delete(root, recursive: true);
        return Task.CompletedTask;
    }

    [Fact]
    public async Task Every_image_reported_indexed_survives_repeated_kills_and_the_folder_ends_indexed_exactly_once()
    {
        var db = Path.Combine(root, "db");
        var acknowledged = new Dictionary<string, string>(StringComparer.Ordinal); // path -> id, as reported before a kill
        var killedWhileIngesting = 0;
        for (var kill = 0; kill < Kills; kill++)
        {
            var gateway = await GatewayProcess.StartAsync(library, db, Settings);
            try
            {
                // Wait for progress in this run (more images reported indexed than before), then kill at once.
                var before = acknowledged.Count;
                Dictionary<string, string> indexed = [];
                await gateway.WaitUntilAsync(async () =>
                {
                    indexed = await IndexedAsync(gateway).ConfigureAwait(false);
                    return indexed.Count > before || indexed.Count == files.Count;
                }, "ingestion to make progress");
                await gateway.KillAsync();
                killedWhileIngesting += indexed.Count < files.Count ? 1 : 0;

                // Reported indexed is acknowledged: it must never change or disappear.
                foreach (var (path, id) in indexed)
                {
                    Assert.True(!acknowledged.TryGetValue(path, out var earlier) || earlier == id, $"{path} changed id across a kill");
                    acknowledged[path] = id;
                }

                Assert.True(acknowledged.Count >= before, "an image reported indexed before a kill was no longer indexed after it");
            }
            finally
            {
                await gateway.DisposeAsync();
            }
        }

        await using var final = await GatewayProcess.StartAsync(library, db, Settings);
        await final.WaitUntilAsync(async () =>
        {
            var s = await final.Client.GetFromJsonAsync<JsonElement>("api/status").ConfigureAwait(false);
            return s.GetProperty("files").GetInt64() == files.Count && s.GetProperty("pending").GetInt32() == 0;
        }, "every file to be indexed after the kills");

        var ids = await IndexedAsync(final);
        Assert.Equal(files.Count, ids.Count);
        foreach (var (path, id) in acknowledged)
        {
            Assert.Equal(id, ids[path]);
        }

        // Ids are content hashes: the store holds one point per distinct content, no more.
        var distinct = files.Select(f => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Path.Combine(library, f)))[..16])).Distinct().Count();
        var status = await final.Client.GetFromJsonAsync<JsonElement>("api/status");
        Assert.Equal(distinct, status.GetProperty("indexed").GetInt64());
        Assert.Equal(0, status.GetProperty("failed").GetInt64());

        // Each image is found by its own bytes, through the graph, as good as identical (the PNG and
        // WebP variants hold the same pixels as their JPEG, so they tie with it), with no hit twice.
        foreach (var path in files)
        {
            using var form = new MultipartFormDataContent { { new ByteArrayContent(await File.ReadAllBytesAsync(Path.Combine(library, path))), "image", "q.jpg" } };
            form.Add(new StringContent("false"), "rerank");
            var hits = (await (await final.Client.PostAsync("api/search", form)).Content.ReadFromJsonAsync<JsonElement>()).GetProperty("hits").EnumerateArray().ToList();
            var self = hits.FirstOrDefault(h => h.GetProperty("id").GetString() == ids[path]);
            Assert.True(self.ValueKind == JsonValueKind.Object && self.GetProperty("score").GetSingle() > 0.99f, $"{path} is not found by its own bytes: {string.Join(", ", hits.Take(3))}");
            Assert.Equal(hits.Count, hits.Select(h => h.GetProperty("id").GetString()).Distinct().Count());
        }

        output.WriteLine($"{Kills} kills ({killedWhileIngesting} mid-ingestion), {acknowledged.Count} images reported indexed before a kill, {files.Count} files / {distinct} images at the end");
        // The first run starts from nothing and is killed at its first progress: at least that one
        // lands mid-ingestion however fast the machine (here: all of them).
        Assert.True(killedWhileIngesting >= 1, $"no kill landed while ingesting");
    }

    /// <summary>Path -> id of every file the gateway reports indexed (GET /api/files, 100 paths per request).</summary>
    private async Task<Dictionary<string, string>> IndexedAsync(GatewayProcess gateway)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var chunk in files.Chunk(100))
        {
            var answer = await gateway.Client.GetFromJsonAsync<JsonElement>("api/files?" + string.Join('&', chunk.Select(p => "path=" + Uri.EscapeDataString(p)))).ConfigureAwait(false);
            foreach (var f in answer.GetProperty("files").EnumerateArray().Where(f => f.GetProperty("state").GetString() == "indexed"))
            {
                result[f.GetProperty("path").GetString()!] = f.GetProperty("id").GetString()!;
            }
        }

        return result;
    }
}
