using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using ImageSearch.Tests.Shared;

namespace ImageSearch.IntegrationTests;

/// <summary>
/// The gateway's index lives on a small real filesystem (tmpfs) that fills up while photos are being
/// ingested: /healthz says the index cannot be written and why, searches keep answering from what
/// is indexed, and once there is room again ingestion completes by itself.
/// </summary>
public sealed class DiskFullTests : IAsyncLifetime
{
    private readonly string root = Directory.CreateTempSubdirectory("disk-full-").FullName;
    private string db = "";
    private GatewayProcess gateway = null!;

    public async Task InitializeAsync()
    {
        db = Directory.CreateDirectory(Path.Combine(root, "db")).FullName;
        SmallDisk.Mount(db, 32);
        var library = TestPaths.MakeLibrary(root, 0);
        gateway = await GatewayProcess.StartAsync(library, db, "--RateLimit:Enabled=false").ConfigureAwait(false);
        await gateway.WaitUntilAsync(async () => (await Status().ConfigureAwait(false)).GetProperty("indexed").GetInt64() == TestPaths.VariantSources.Length,
            "the library to be indexed").ConfigureAwait(false);
    }

    public async Task DisposeAsync()
    {
        await gateway.DisposeAsync().ConfigureAwait(false);
        SmallDisk.Unmount(db);
        Directory.Delete(root, recursive: true);
    }

    [Fact]
    public async Task A_full_index_disk_is_reported_searches_go_on_and_ingestion_completes_once_there_is_room()
    {
        var filler = Path.Combine(db, "filler");
        SmallDisk.Fill(filler);
        var more = Directory.GetFiles(TestPaths.Photos, "*.jpg").Order(StringComparer.Ordinal)
            .Where(f => !TestPaths.VariantSources.Contains(Path.GetFileNameWithoutExtension(f))).Take(6).ToList();
        foreach (var f in more)
        {
            File.Copy(f, Path.Combine(gateway.Library, Path.GetFileName(f)));
        }

        // The write fails, is retried, and the health report says why.
        JsonElement health = default;
        await gateway.WaitUntilAsync(async () =>
        {
            var response = await gateway.Client.GetAsync("healthz").ConfigureAwait(false);
            health = await response.Content.ReadFromJsonAsync<JsonElement>().ConfigureAwait(false);
            return health.GetProperty("status").GetString() == "Degraded";
        }, "the health report to show the failing writes");
        var index = health.GetProperty("checks").GetProperty("index").GetProperty("description").GetString();
        Assert.Contains("disk is full", index, StringComparison.Ordinal);
        Assert.Contains("5 images indexed", index, StringComparison.Ordinal);

        // Searches answer from what is indexed.
        var photo = await File.ReadAllBytesAsync(Path.Combine(TestPaths.Photos, TestPaths.VariantSources[2] + ".jpg"));
        using var form = new MultipartFormDataContent { { new ByteArrayContent(photo), "image", "q.jpg" } };
        var search = await gateway.Client.PostAsync("api/search", form);
        Assert.Equal(HttpStatusCode.OK, search.StatusCode);
        Assert.Equal(TestPaths.VariantSources[2] + ".jpg", (await search.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("hits")[0].GetProperty("path").GetString());
        await gateway.WaitUntilAsync(() => Task.FromResult(gateway.Log.Contains("could not be written: its disk is full", StringComparison.Ordinal)), "the log to say why");

        // Room again: the retried writes go through without anyone stepping in.
        File.Delete(filler);
        var total = TestPaths.VariantSources.Length + more.Count;
        await gateway.WaitUntilAsync(async () => (await Status().ConfigureAwait(false)).GetProperty("indexed").GetInt64() == total, $"{total} images to be indexed");
        var healthy = await (await gateway.Client.GetAsync("healthz")).Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal("Healthy", healthy.GetProperty("status").GetString());
        Assert.Equal(0, (await Status()).GetProperty("failed").GetInt64());
    }

    private async Task<JsonElement> Status() => await gateway.Client.GetFromJsonAsync<JsonElement>("api/status").ConfigureAwait(false);
}
