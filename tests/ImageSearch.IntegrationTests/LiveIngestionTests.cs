using System.Net.Http.Json;
using System.Text.Json;

namespace ImageSearch.IntegrationTests;

/// <summary>The watched folder drives the index: files added, copied, broken, replaced and removed while the gateway runs.</summary>
public sealed class LiveIngestionTests : IAsyncLifetime
{
    private readonly string root = Directory.CreateTempSubdirectory("live-").FullName;
    private GatewayProcess gateway = null!;

    public async Task InitializeAsync()
    {
        var library = TestPaths.MakeLibrary(root, 3);
        // A file limit above what can be read into memory, so the unreadable-file test reaches the reader.
        gateway = await GatewayProcess.StartAsync(library, Path.Combine(root, "db"), "--Library:RescanInterval=00:00:10", "--Library:MaxFileBytes=8000000000").ConfigureAwait(false);
        await WaitForAsync(s => s.Indexed == 8 && s.Pending == 0, "the initial 8 photos").ConfigureAwait(false);
    }

    public async Task DisposeAsync()
    {
        await gateway.DisposeAsync().ConfigureAwait(false);
        Directory.Delete(root, recursive: true);
    }

    [Fact]
    public async Task Files_added_copied_broken_and_removed_while_running_are_reflected_in_the_index()
    {
        // A new photo, in a new subfolder; status says when the index last took it in.
        var sub = Directory.CreateDirectory(Path.Combine(gateway.Library, "new", "deeper")).FullName;
        var added = DateTimeOffset.UtcNow;
        File.Copy(Path.Combine(TestPaths.Photos, "nature-lake.jpg"), Path.Combine(sub, "lake.jpg"));
        await WaitForAsync(s => s.Indexed == 9 && s.Files == 9, "the added photo");
        var lastIndexed = (await gateway.Client.GetFromJsonAsync<JsonElement>("api/status")).GetProperty("lastIndexedAt").GetDateTimeOffset();
        Assert.InRange(lastIndexed, added, DateTimeOffset.UtcNow);
        Assert.Equal("new/deeper/lake.jpg", await TopPathAsync(Path.Combine(TestPaths.Photos, "nature-lake.jpg")));

        // A byte-identical copy under another name: one more file, no new image.
        File.Copy(Path.Combine(TestPaths.Photos, "nature-lake.jpg"), Path.Combine(gateway.Library, "lake-copy.jpg"));
        await WaitForAsync(s => s.Files == 10, "the copy to be cataloged");
        Assert.Equal(9, (await StatusAsync()).Indexed);

        // A broken file: counted as failed, with its reason.
        await File.WriteAllBytesAsync(Path.Combine(gateway.Library, "broken.jpg"), await File.ReadAllBytesAsync(Path.Combine(TestPaths.Variants, "broken-truncated.jpg")));
        await WaitForAsync(s => s.Failed == 1, "the broken file to be reported");
        var failure = (await gateway.Client.GetFromJsonAsync<JsonElement>("api/status")).GetProperty("failures")[0];
        Assert.Equal("broken.jpg", failure.GetProperty("path").GetString());
        Assert.False(string.IsNullOrWhiteSpace(failure.GetProperty("reason").GetString()));
        Assert.Equal(9, (await StatusAsync()).Indexed);

        // Removing one of the two copies keeps the image (the other path still holds it) and repoints it.
        File.Delete(Path.Combine(sub, "lake.jpg"));
        await WaitForAsync(s => s.Files == 10, "the removal to be cataloged");
        Assert.Equal(9, (await StatusAsync()).Indexed);
        Assert.Equal("lake-copy.jpg", await TopPathAsync(Path.Combine(TestPaths.Photos, "nature-lake.jpg")));

        // Removing the last copy deletes the image.
        File.Delete(Path.Combine(gateway.Library, "lake-copy.jpg"));
        await WaitForAsync(s => s.Indexed == 8 && s.Files == 9, "the image to be deleted");

        // Replacing a broken file by a good one under the same name clears the failure.
        File.Copy(Path.Combine(TestPaths.Photos, "nature-moon.jpg"), Path.Combine(gateway.Library, "broken.jpg"), overwrite: true);
        await WaitForAsync(s => s.Failed == 0 && s.Indexed == 9, "the replaced file to be indexed");
    }

    [Fact]
    public async Task A_file_that_keeps_failing_after_retries_is_reported_failed_not_left_pending()
    {
        // A sparse 3 GB file: .NET refuses to read more than 2 GB into an array, on every retry.
        var huge = Path.Combine(gateway.Library, "huge.jpg");
        await using (var f = File.Create(huge))
        {
            f.SetLength(3L * 1024 * 1024 * 1024);
        }

        await WaitForAsync(s => s.Failed == 1 && s.Pending == 0, "the unreadable file to be reported failed");
        var failure = (await gateway.Client.GetFromJsonAsync<JsonElement>("api/status")).GetProperty("failures")[0];
        Assert.Equal("huge.jpg", failure.GetProperty("path").GetString());
        Assert.Contains("after retries", failure.GetProperty("reason").GetString(), StringComparison.Ordinal);
        Assert.Equal(8, (await StatusAsync()).Indexed);
    }

    [Fact]
    public async Task The_index_survives_a_restart_and_changes_made_while_stopped_are_picked_up()
    {
        await gateway.DisposeAsync();
        File.Delete(Path.Combine(gateway.Library, "outdoors-school2.jpg"));
        File.Copy(Path.Combine(TestPaths.Photos, "nature-moon.jpg"), Path.Combine(gateway.Library, "moon.jpg"));
        gateway = await GatewayProcess.StartAsync(gateway.Library, gateway.Db);
        await WaitForAsync(s => s.Files == 8 && s.Indexed == 8 && s.Pending == 0, "the restarted gateway to catch up");
        Assert.Equal("moon.jpg", await TopPathAsync(Path.Combine(TestPaths.Photos, "nature-moon.jpg")));
        Assert.Equal("nature-flower-bed.jpg", await TopPathAsync(Path.Combine(TestPaths.Variants, "nature-flower-bed.crop50.jpg")));
    }

    private sealed record Counts(long Indexed, long Files, long Failed, int Pending);

    private async Task<Counts> StatusAsync()
    {
        var s = await gateway.Client.GetFromJsonAsync<JsonElement>("api/status").ConfigureAwait(false);
        return new Counts(s.GetProperty("indexed").GetInt64(), s.GetProperty("files").GetInt64(), s.GetProperty("failed").GetInt64(), s.GetProperty("pending").GetInt32());
    }

    private Task WaitForAsync(Func<Counts, bool> condition, string what) =>
        gateway.WaitUntilAsync(async () => condition(await StatusAsync().ConfigureAwait(false)), what);

    private async Task<string?> TopPathAsync(string queryPath)
    {
        using var form = new MultipartFormDataContent { { new ByteArrayContent(await File.ReadAllBytesAsync(queryPath)), "image", "q.jpg" } };
        var response = await gateway.Client.PostAsync("api/search", form);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        return body.GetProperty("hits")[0].GetProperty("path").GetString();
    }
}
