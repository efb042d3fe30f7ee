using System.Net.Http.Json;
using System.Text.Json;

namespace ImageSearch.IntegrationTests;

/// <summary>
/// A model other than the default, named on the command line (<c>--model</c>) and in the server's
/// configuration (<c>Embedding:Model</c>): the multi-scale R-MAC, whose graph takes 320x320
/// images. Each indexes into a folder named by that model, reports it, and finds the source of a
/// cropped copy first, through the same code path as the default.
/// </summary>
public sealed class ModelOptionTests : IDisposable
{
    private const string Model = "mobilenet-v2-1.4-rmac-ms";
    private const int LibrarySize = 8;
    private readonly string root = Directory.CreateTempSubdirectory("model-option-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    [Fact]
    public async Task The_cli_indexes_and_searches_with_the_model_it_is_given()
    {
        var library = TestPaths.MakeLibrary(root, LibrarySize - TestPaths.VariantSources.Length);
        var db = Path.Combine(root, "db");
        var (code, stdout, stderr) = await TestPaths.RunAsync(TestPaths.Cli, "index", library, "--db", db, "--model", Model);
        Assert.True(code == 0, stderr);
        Assert.Contains($"indexed {LibrarySize} images (0 failed)", stdout, StringComparison.Ordinal);
        Assert.StartsWith(Model + "@", Path.GetFileName(Assert.Single(Directory.GetDirectories(db))), StringComparison.Ordinal);

        (code, stdout, stderr) = await TestPaths.RunAsync(TestPaths.Cli, "search", Path.Combine(TestPaths.Variants, "nature-woods-and-bench.crop50.jpg"),
            "--db", db, "--model", Model, "--top", "3");
        Assert.True(code == 0, stderr);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, lines.Length);
        Assert.EndsWith("nature-woods-and-bench.jpg", lines[0].Trim(), StringComparison.Ordinal);

        // Without --model, the default model finds nothing of its own in that folder: an error that
        // names the model the folder was indexed with, not an empty answer.
        (code, stdout, stderr) = await TestPaths.RunAsync(TestPaths.Cli, "search", Path.Combine(TestPaths.Variants, "nature-woods-and-bench.crop50.jpg"), "--db", db);
        Assert.Equal(2, code);
        Assert.Empty(stdout);
        Assert.Contains($"--model {Model})", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_server_indexes_reports_and_searches_with_the_configured_model()
    {
        var library = TestPaths.MakeLibrary(root, LibrarySize - TestPaths.VariantSources.Length);
        await using var gateway = await GatewayProcess.StartAsync(library, Path.Combine(root, "db"), $"--Embedding:Model={Model}");
        await gateway.WaitUntilAsync(async () => (await gateway.Client.GetFromJsonAsync<JsonElement>("api/status")).GetProperty("indexed").GetInt64() == LibrarySize,
            $"{LibrarySize} images to be indexed");

        var status = await gateway.Client.GetFromJsonAsync<JsonElement>("api/status");
        var key = status.GetProperty("model").GetString()!;
        Assert.StartsWith(Model + "@", key, StringComparison.Ordinal);
        Assert.StartsWith(Model + "@", Path.GetFileName(Assert.Single(Directory.GetDirectories(Path.Combine(root, "db")))), StringComparison.Ordinal);

        using var form = new MultipartFormDataContent
        {
            { new ByteArrayContent(await File.ReadAllBytesAsync(Path.Combine(TestPaths.Variants, "outdoors-school2.crop50.jpg"))), "image", "q.jpg" },
        };
        var response = await gateway.Client.PostAsync("api/search", form);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, body);
        var answer = JsonDocument.Parse(body).RootElement;
        Assert.Equal(key, answer.GetProperty("model").GetString());
        Assert.Equal("outdoors-school2.jpg", answer.GetProperty("hits")[0].GetProperty("path").GetString());
    }
}
