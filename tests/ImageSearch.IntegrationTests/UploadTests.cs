using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;

namespace ImageSearch.IntegrationTests;

/// <summary>
/// <c>POST /api/images</c> on the real gateway: uploads land in the watched folder under safe names,
/// the watcher indexes them like any other file, and bad input is refused before anything is written.
/// </summary>
public sealed class UploadTests : IAsyncLifetime
{
    private const long MaxFileBytes = 400_000;
    private readonly string root = Directory.CreateTempSubdirectory("upload-").FullName;
    private GatewayProcess gateway = null!;

    private string Uploads => Path.Combine(gateway.Library, "uploads");

    public async Task InitializeAsync()
    {
        var library = TestPaths.MakeLibrary(root, 0);
        gateway = await GatewayProcess.StartAsync(library, Path.Combine(root, "db"),
            $"--Upload:MaxFileBytes={MaxFileBytes}", "--Upload:MaxRequestBytes=1000000", "--Upload:MaxPixels=40000000").ConfigureAwait(false);
        await gateway.WaitUntilAsync(async () => (await Status().ConfigureAwait(false)).GetProperty("indexed").GetInt64() == TestPaths.VariantSources.Length, "the library to be indexed").ConfigureAwait(false);
    }

    public async Task DisposeAsync()
    {
        await gateway.DisposeAsync().ConfigureAwait(false);
        Directory.Delete(root, recursive: true);
    }

    [Fact]
    public async Task An_uploaded_photo_is_stored_indexed_and_found_first_by_itself()
    {
        var bytes = await File.ReadAllBytesAsync(Path.Combine(TestPaths.Photos, "nature-lake.jpg"));
        var response = await gateway.Client.PostAsync("api/images", Form(("lake.jpg", bytes)));
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Accepted, body);
        var stored = JsonDocument.Parse(body).RootElement.GetProperty("images")[0];
        Assert.Equal("uploads/lake.jpg", stored.GetProperty("path").GetString());
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(bytes)[..16]), stored.GetProperty("id").GetString());
        Assert.Equal("jpeg", stored.GetProperty("format").GetString());
        Assert.Equal(bytes, await File.ReadAllBytesAsync(Path.Combine(Uploads, "lake.jpg")));
        Assert.Equal($"/api/files?path=uploads%2Flake.jpg", response.Headers.Location?.OriginalString);

        // The watcher ingests it like any file; its state says when it is searchable.
        var state = await WaitForStateAsync("uploads/lake.jpg", "indexed");
        Assert.Equal(stored.GetProperty("id").GetString(), state.GetProperty("id").GetString());
        Assert.Equal("uploads/lake.jpg", await TopPathAsync(bytes));

        var recent = await gateway.Client.GetFromJsonAsync<JsonElement>("api/images?recent=3");
        var first = recent.GetProperty("images")[0];
        Assert.Equal("uploads/lake.jpg", first.GetProperty("path").GetString());
        Assert.Equal(480, first.GetProperty("width").GetInt32());
        Assert.Equal(3, recent.GetProperty("images").GetArrayLength());
        Assert.Equal(HttpStatusCode.OK, (await gateway.Client.GetAsync(first.GetProperty("thumbnailUrl").GetString())).StatusCode);
    }

    [Fact]
    public async Task Traversal_and_odd_names_are_neutralised_and_nothing_is_overwritten()
    {
        var photo = await File.ReadAllBytesAsync(Path.Combine(TestPaths.Photos, "nature-moon.jpg"));
        var png = await File.ReadAllBytesAsync(Path.Combine(TestPaths.Variants, "indoors-chalkboard.png"));
        Directory.CreateDirectory(Uploads);
        await File.WriteAllTextAsync(Path.Combine(Uploads, "taken.jpg"), "already here");

        var names = new[] { "../../evil.jpg", "..\\..\\evil2.jpg", "/etc/passwd", ".hidden.jpg", "a/b/nested.jpg", "shell.php", "taken.jpg", "taken.jpg", "../", "Été à Paris (1).JPG" };
        var stored = new List<string>();
        foreach (var name in names)
        {
            var response = await gateway.Client.PostAsync("api/images", Form((name, name == "shell.php" ? png : photo)));
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.Accepted, $"{name}: {body}");
            stored.Add(JsonDocument.Parse(body).RootElement.GetProperty("images")[0].GetProperty("path").GetString()!);
        }

        Assert.Equal(
            ["uploads/evil.jpg", "uploads/evil2.jpg", "uploads/passwd.jpg", "uploads/hidden.jpg", "uploads/nested.jpg", "uploads/shell.png",
             "uploads/taken-2.jpg", "uploads/taken-3.jpg", "uploads/image.jpg", "uploads/Été-à-Paris-1.jpg"],
            stored);
        Assert.Equal("already here", await File.ReadAllTextAsync(Path.Combine(Uploads, "taken.jpg")));
        Assert.Empty(Directory.GetFiles(root, "evil*", SearchOption.TopDirectoryOnly));
        Assert.DoesNotContain(Directory.GetFiles(gateway.Library, "*", SearchOption.TopDirectoryOnly), f => Path.GetFileName(f).StartsWith("evil", StringComparison.Ordinal));
        Assert.Equal(["uploads"], Directory.GetDirectories(gateway.Library).Select(Path.GetFileName));
        Assert.Empty(Directory.GetDirectories(Uploads));
        Assert.Empty(Directory.GetFiles(Uploads, ".*"));
        foreach (var path in stored)
        {
            Assert.Equal(path.EndsWith(".png", StringComparison.Ordinal) ? png : photo, await File.ReadAllBytesAsync(Path.Combine(gateway.Library, path)));
        }

        await WaitForStateAsync("uploads/shell.png", "indexed");
    }

    [Theory]
    [InlineData("broken-text.jpg", HttpStatusCode.UnsupportedMediaType, "Not a recognised image format")]
    [InlineData("broken-html.png", HttpStatusCode.UnsupportedMediaType, "format")]
    [InlineData("broken-truncated.jpg", HttpStatusCode.BadRequest, "Corrupt")]
    [InlineData("broken-zero.jpg", HttpStatusCode.BadRequest, "empty")]
    [InlineData("bomb-20000x20000.png", HttpStatusCode.RequestEntityTooLarge, "pixels")]
    public async Task Files_that_are_not_acceptable_images_are_refused_and_not_written(string file, HttpStatusCode status, string reason)
    {
        var good = await File.ReadAllBytesAsync(Path.Combine(TestPaths.Photos, "nature-tree.jpg"));
        var bad = await File.ReadAllBytesAsync(Path.Combine(TestPaths.Variants, file));

        // With a good file in the same request: a request is stored whole or not at all.
        var response = await gateway.Client.PostAsync("api/images", Form(("good.jpg", good), (file, bad)));
        await AssertProblemAsync(response, status, reason);
        Assert.Contains(file, (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(Uploads, "good.jpg")));
        Assert.False(File.Exists(Path.Combine(Uploads, Path.ChangeExtension(file, ".jpg"))));
    }

    [Fact]
    public async Task Files_and_requests_over_the_limits_get_413()
    {
        // Declared size over Upload:MaxFileBytes: refused before the content is looked at.
        var big = new byte[MaxFileBytes + 1];
        (await File.ReadAllBytesAsync(Path.Combine(TestPaths.Photos, "nature-tree.jpg"))).CopyTo(big, 0);
        await AssertProblemAsync(await gateway.Client.PostAsync("api/images", Form(("big.jpg", big))), HttpStatusCode.RequestEntityTooLarge, "limited to");

        // A body over Upload:MaxRequestBytes is refused by its length.
        using var request = new HttpRequestMessage(HttpMethod.Post, "api/images") { Content = Form(("huge.jpg", new byte[1_200_000])) };
        request.Headers.ExpectContinue = true;
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, (await gateway.Client.SendAsync(request)).StatusCode);
        Assert.False(Directory.Exists(Uploads) && Directory.EnumerateFileSystemEntries(Uploads).Any());
    }

    [Fact]
    public async Task Malformed_requests_and_cross_site_browser_posts_get_problems()
    {
        await AssertProblemAsync(await gateway.Client.PostAsync("api/images", new StringContent("{}", null, "application/json")), HttpStatusCode.UnsupportedMediaType, "multipart/form-data");
        await AssertProblemAsync(await gateway.Client.PostAsync("api/images", new MultipartFormDataContent { { new StringContent("x"), "note" } }), HttpStatusCode.BadRequest, "no file");

        var photo = await File.ReadAllBytesAsync(Path.Combine(TestPaths.Photos, "nature-tree.jpg"));
        foreach (var (header, value) in new[] { ("Sec-Fetch-Site", "cross-site"), ("Sec-Fetch-Site", "same-site"), ("Origin", "http://evil.example") })
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "api/images") { Content = Form(("tree.jpg", photo)) };
            request.Headers.Add(header, value);
            await AssertProblemAsync(await gateway.Client.SendAsync(request), HttpStatusCode.Forbidden, "own page");
        }

        // The page's own requests (same origin) are accepted.
        using var own = new HttpRequestMessage(HttpMethod.Post, "api/images") { Content = Form(("tree.jpg", photo)) };
        own.Headers.Add("Sec-Fetch-Site", "same-origin");
        own.Headers.Add("Origin", gateway.Address.GetLeftPart(UriPartial.Authority));
        Assert.Equal(HttpStatusCode.Accepted, (await gateway.Client.SendAsync(own)).StatusCode);

        await AssertProblemAsync(await gateway.Client.GetAsync("api/files?path=../outside.jpg"), HttpStatusCode.BadRequest, "library-relative");
        await AssertProblemAsync(await gateway.Client.GetAsync("api/files"), HttpStatusCode.BadRequest, "path");
        await AssertProblemAsync(await gateway.Client.GetAsync("api/images?recent=0"), HttpStatusCode.BadRequest, "recent");
        var missing = await gateway.Client.GetFromJsonAsync<JsonElement>("api/files?path=no/such.jpg");
        Assert.Equal("missing", missing.GetProperty("files")[0].GetProperty("state").GetString());
    }

    [Fact]
    public async Task Status_describes_uploads_and_the_start_warns_that_no_key_is_set()
    {
        var upload = (await Status()).GetProperty("upload");
        Assert.True(upload.GetProperty("enabled").GetBoolean());
        Assert.False(upload.GetProperty("apiKeyRequired").GetBoolean());
        Assert.Equal(MaxFileBytes, upload.GetProperty("maxFileBytes").GetInt64());
        Assert.Equal(JsonValueKind.Null, upload.GetProperty("problem").ValueKind);
        Assert.Contains("Uploads are enabled without an API key", gateway.Log, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_upload_that_fails_ingestion_is_reported_failed_with_the_reason()
    {
        // A JPEG whose header is intact but whose pixels are cut off is refused at upload; one with
        // damage libjpeg only warns about passes both; so make the watcher see a failure directly:
        // a good upload replaced on disk by a truncated copy (as a user's tool might leave it).
        var photo = await File.ReadAllBytesAsync(Path.Combine(TestPaths.Photos, "nature-tree.jpg"));
        var response = await gateway.Client.PostAsync("api/images", Form(("to-break.jpg", photo)));
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        await WaitForStateAsync("uploads/to-break.jpg", "indexed");
        await File.WriteAllBytesAsync(Path.Combine(Uploads, "to-break.jpg"), await File.ReadAllBytesAsync(Path.Combine(TestPaths.Variants, "broken-truncated.jpg")));
        var failed = await WaitForStateAsync("uploads/to-break.jpg", "failed");
        Assert.False(string.IsNullOrWhiteSpace(failed.GetProperty("reason").GetString()));
    }

    private async Task<JsonElement> Status() =>
        await gateway.Client.GetFromJsonAsync<JsonElement>("api/status").ConfigureAwait(false);

    private async Task<JsonElement> WaitForStateAsync(string path, string wanted)
    {
        JsonElement last = default;
        await gateway.WaitUntilAsync(async () =>
        {
            last = (await gateway.Client.GetFromJsonAsync<JsonElement>($"api/files?path={Uri.EscapeDataString(path)}").ConfigureAwait(false)).GetProperty("files")[0];
            return last.GetProperty("state").GetString() == wanted;
        }, $"{path} to be {wanted}").ConfigureAwait(false);
        return last;
    }

    private async Task<string?> TopPathAsync(byte[] query)
    {
        using var form = new MultipartFormDataContent { { new ByteArrayContent(query), "image", "q.jpg" } };
        var body = await (await gateway.Client.PostAsync("api/search", form)).Content.ReadFromJsonAsync<JsonElement>();
        return body.GetProperty("hits")[0].GetProperty("path").GetString();
    }

    internal static MultipartFormDataContent Form(params (string Name, byte[] Bytes)[] files)
    {
        var form = new MultipartFormDataContent();
        foreach (var (name, bytes) in files)
        {
            var content = new ByteArrayContent(bytes);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            // Set by hand: the header helpers would quote or encode the hostile names differently.
            content.Headers.ContentDisposition = new ContentDispositionHeaderValue("form-data") { Name = "\"image\"", FileName = "\"" + name.Replace("\\", "\\\\", StringComparison.Ordinal) + "\"" };
            form.Add(content);
        }

        return form;
    }

    internal static async Task AssertProblemAsync(HttpResponseMessage response, HttpStatusCode status, string detailContains)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(status == response.StatusCode, $"expected {status}, got {response.StatusCode}: {body}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = JsonDocument.Parse(body).RootElement;
        Assert.Equal((int)status, problem.GetProperty("status").GetInt32());
        Assert.Contains(detailContains, problem.GetProperty("detail").GetString() ?? "", StringComparison.OrdinalIgnoreCase);
    }
}

/// <summary>With <c>Http:ApiKey</c> set, uploads need the key; searches and reads do not.</summary>
public sealed class UploadApiKeyTests : IAsyncLifetime
{
    private const string Key = "test-key-0123456789abcdef";
    private readonly string root = Directory.CreateTempSubdirectory("upload-key-").FullName;
    private GatewayProcess gateway = null!;

    public async Task InitializeAsync()
    {
        var library = Directory.CreateDirectory(Path.Combine(root, "library")).FullName;
        gateway = await GatewayProcess.StartAsync(library, Path.Combine(root, "db"), $"--Http:ApiKey={Key}").ConfigureAwait(false);
    }

    public async Task DisposeAsync()
    {
        await gateway.DisposeAsync().ConfigureAwait(false);
        Directory.Delete(root, recursive: true);
    }

    [Fact]
    public async Task Uploads_need_the_key_in_the_header()
    {
        var photo = await File.ReadAllBytesAsync(Path.Combine(TestPaths.Photos, "nature-tree.jpg"));
        await UploadTests.AssertProblemAsync(await gateway.Client.PostAsync("api/images", UploadTests.Form(("a.jpg", photo))), HttpStatusCode.Unauthorized, "X-Api-Key");

        using var wrong = new HttpRequestMessage(HttpMethod.Post, "api/images") { Content = UploadTests.Form(("a.jpg", photo)) };
        wrong.Headers.Add("X-Api-Key", Key + "x");
        await UploadTests.AssertProblemAsync(await gateway.Client.SendAsync(wrong), HttpStatusCode.Unauthorized, "API key");
        Assert.False(Directory.Exists(Path.Combine(gateway.Library, "uploads")) && Directory.EnumerateFiles(Path.Combine(gateway.Library, "uploads")).Any());

        using var right = new HttpRequestMessage(HttpMethod.Post, "api/images") { Content = UploadTests.Form(("a.jpg", photo)) };
        right.Headers.Add("X-Api-Key", Key);
        Assert.Equal(HttpStatusCode.Accepted, (await gateway.Client.SendAsync(right)).StatusCode);

        // Reads stay open, and the page learns that a key is needed.
        await gateway.WaitUntilAsync(async () => (await gateway.Client.GetFromJsonAsync<JsonElement>("api/status").ConfigureAwait(false)).GetProperty("indexed").GetInt64() == 1, "the upload to be indexed");
        var status = await gateway.Client.GetFromJsonAsync<JsonElement>("api/status");
        Assert.True(status.GetProperty("upload").GetProperty("apiKeyRequired").GetBoolean());
        using var form = new MultipartFormDataContent { { new ByteArrayContent(photo), "image", "q.jpg" } };
        Assert.Equal(HttpStatusCode.OK, (await gateway.Client.PostAsync("api/search", form)).StatusCode);
        Assert.DoesNotContain("without an API key", gateway.Log, StringComparison.Ordinal);
    }
}

/// <summary>Upload settings are validated when the gateway starts.</summary>
public sealed class UploadSettingsTests
{
    [Theory]
    [InlineData("--Upload:Folder=../outside", "Upload:Folder")]
    [InlineData("--Upload:Folder=.hidden", "Upload:Folder")]
    [InlineData("--Http:ApiKey=short", "ApiKey")]
    public async Task Invalid_settings_stop_the_gateway_at_start_with_the_reason(string setting, string named)
    {
        var root = Directory.CreateTempSubdirectory("upload-settings-").FullName;
        try
        {
            var (code, stdout, stderr) = await TestPaths.RunAsync(TestPaths.Gateway, "--urls", $"http://127.0.0.1:{TestPaths.FreePort()}",
                $"--Library:Root={Path.Combine(root, "library")}", $"--Index:Directory={Path.Combine(root, "db")}", $"--Embedding:ModelsDirectory={TestPaths.Models}", setting);
            Assert.NotEqual(0, code);
            Assert.Contains(named, stdout + stderr, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }
}
