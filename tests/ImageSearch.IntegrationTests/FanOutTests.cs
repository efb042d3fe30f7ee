using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace ImageSearch.IntegrationTests;

/// <summary>
/// A gateway in distributed mode fanning out to two backends: a live one (a real process serving
/// the query API over an indexed library) and one that is down. Answers merge what the live one
/// says and are marked partial; bad input is refused with the backend's own problem.
/// </summary>
public sealed class FanOutTests(IndexedGatewayFixture backend) : IClassFixture<IndexedGatewayFixture>, IAsyncLifetime
{
    private readonly string root = Directory.CreateTempSubdirectory("fanout-").FullName;
    private GatewayProcess gateway = null!;

    public async Task InitializeAsync()
    {
        var dead = $"http://127.0.0.1:{TestPaths.FreePort()}/";
        gateway = await GatewayProcess.StartAsync(Path.Combine(root, "unused-library"), Path.Combine(root, "unused-db"),
            $"--Gateway:QueryServices:0={backend.Gateway.Address}", $"--Gateway:QueryServices:1={dead}", "--Gateway:BackendTimeout=00:00:05").ConfigureAwait(false);
    }

    public async Task DisposeAsync()
    {
        await gateway.DisposeAsync().ConfigureAwait(false);
        Directory.Delete(root, recursive: true);
    }

    [Fact]
    public async Task Search_merges_the_live_backend_and_marks_the_answer_partial()
    {
        using var form = new MultipartFormDataContent { { new ByteArrayContent(await File.ReadAllBytesAsync(Path.Combine(TestPaths.Variants, "nature-flower-bed.crop50.jpg"))), "image", "q.jpg" } };
        var response = await gateway.Client.PostAsync("api/search", form);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("nature-flower-bed.jpg", body.GetProperty("hits")[0].GetProperty("path").GetString());
        Assert.True(body.GetProperty("partial").GetBoolean());
        Assert.Single(body.GetProperty("errors").EnumerateArray());

        // Images are proxied from the backend that has them.
        var thumb = await gateway.Client.GetAsync(body.GetProperty("hits")[0].GetProperty("thumbnailUrl").GetString());
        Assert.Equal(HttpStatusCode.OK, thumb.StatusCode);
        Assert.Equal("image/jpeg", thumb.Content.Headers.ContentType?.MediaType);

        using var batch = new MultipartFormDataContent();
        batch.Add(new ByteArrayContent(await File.ReadAllBytesAsync(Path.Combine(TestPaths.Variants, "outdoors-school2.crop50.jpg"))), "image", "a.jpg");
        batch.Add(new ByteArrayContent(await File.ReadAllBytesAsync(Path.Combine(TestPaths.Variants, "nature-woods-and-bench.crop50.jpg"))), "image", "b.jpg");
        var results = (await (await gateway.Client.PostAsync("api/search/batch", batch)).Content.ReadFromJsonAsync<JsonElement>()).GetProperty("results");
        Assert.Equal("outdoors-school2.jpg", results[0].GetProperty("hits")[0].GetProperty("path").GetString());
        Assert.Equal("nature-woods-and-bench.jpg", results[1].GetProperty("hits")[0].GetProperty("path").GetString());
        Assert.True(results[1].GetProperty("partial").GetBoolean());

        var status = await gateway.Client.GetFromJsonAsync<JsonElement>("api/status");
        Assert.Equal(IndexedGatewayFixture.LibrarySize, status.GetProperty("indexed").GetInt64());
    }

    [Fact]
    public async Task Recent_images_and_file_states_come_from_the_live_backend()
    {
        var recent = await gateway.Client.GetFromJsonAsync<JsonElement>("api/images?recent=4");
        var images = recent.GetProperty("images").EnumerateArray().ToList();
        Assert.Equal(4, images.Count);
        Assert.Equal(images.Count, images.Select(i => i.GetProperty("id").GetString()).Distinct().Count());

        var path = images[0].GetProperty("path").GetString()!;
        var files = (await gateway.Client.GetFromJsonAsync<JsonElement>($"api/files?path={Uri.EscapeDataString(path)}&path=not-there.jpg")).GetProperty("files");
        Assert.Equal("indexed", files[0].GetProperty("state").GetString());
        Assert.Equal(images[0].GetProperty("id").GetString(), files[0].GetProperty("id").GetString());
        Assert.Equal("missing", files[1].GetProperty("state").GetString());
    }

    [Fact]
    public async Task A_backend_refusing_bad_input_is_passed_on_as_a_problem()
    {
        using var form = new MultipartFormDataContent { { new ByteArrayContent(await File.ReadAllBytesAsync(Path.Combine(TestPaths.Variants, "broken-text.jpg"))), "image", "q.jpg" } };
        var response = await gateway.Client.PostAsync("api/search", form);
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Contains("Not a recognised image format", (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("detail").GetString(), StringComparison.Ordinal);
    }
}
