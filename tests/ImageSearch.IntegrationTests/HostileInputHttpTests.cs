using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using ImageSearch.Imaging.Tests;
using Xunit.Abstractions;

namespace ImageSearch.IntegrationTests;

/// <summary>
/// The hostile-input corpus against the real gateway (embedded mode, real model, loopback HTTP): as
/// queries, as uploads and as files dropped into the watched folder; ids and paths that try to leave
/// the library; deletes behind the API key. Every answer is the right status with a problem body,
/// never a 5xx; the process stays up and its memory bounded.
/// </summary>
public sealed class HostileInputHttpTests(ITestOutputHelper output) : IAsyncLifetime
{
    internal const string Key = "hostile-input-key-0123456789";
    private readonly string root = Directory.CreateTempSubdirectory("hostile-").FullName;
    private IReadOnlyList<HostileFile> corpus = [];
    private GatewayProcess gateway = null!;

    public async Task InitializeAsync()
    {
        corpus = HostileCorpus.Build(Path.Combine(TestPaths.Photos, TestPaths.VariantSources[0] + ".jpg"));
        var library = TestPaths.MakeLibrary(root, 0);
        gateway = await GatewayProcess.StartAsync(library, Path.Combine(root, "db"), $"--Http:ApiKey={Key}",
            "--RateLimit:SearchBurst=100000", "--RateLimit:WriteBurst=100000").ConfigureAwait(false);
        await gateway.WaitUntilAsync(async () => (await Status().ConfigureAwait(false)).GetProperty("indexed").GetInt64() == TestPaths.VariantSources.Length,
            "the library to be indexed").ConfigureAwait(false);
    }

    public async Task DisposeAsync()
    {
        await gateway.DisposeAsync().ConfigureAwait(false);
        Directory.Delete(root, recursive: true);
    }

    [Fact]
    public async Task Every_hostile_file_gets_its_status_as_a_query_and_as_an_upload_and_the_gateway_stays_up_in_bounded_memory()
    {
        var wrong = new List<string>();
        foreach (var file in corpus)
        {
            using var query = Form(file.Name, file.Bytes);
            var searched = await gateway.Client.PostAsync("api/search", query);
            await CheckAsync(searched, file.SearchStatuses, $"search {file.Name} ({file.Why})", wrong);

            using var upload = new HttpRequestMessage(HttpMethod.Post, "api/images") { Content = Form(file.Name, file.Bytes) };
            upload.Headers.Add("X-Api-Key", Key);
            var uploaded = await gateway.Client.SendAsync(upload);
            await CheckAsync(uploaded, [.. file.SearchStatuses.Select(s => s == 200 ? 202 : s)], $"upload {file.Name} ({file.Why})", wrong);
        }

        Assert.True(wrong.Count == 0, string.Join("\n", wrong));
        Assert.False(gateway.HasExited);
        Assert.Equal(HttpStatusCode.OK, (await gateway.Client.GetAsync("healthz")).StatusCode);

        // A photo still finds itself: nothing above disturbed the index.
        var photo = await File.ReadAllBytesAsync(Path.Combine(TestPaths.Photos, TestPaths.VariantSources[1] + ".jpg"));
        using var check = Form("q.jpg", photo);
        var hits = (await (await gateway.Client.PostAsync("api/search", check)).Content.ReadFromJsonAsync<JsonElement>()).GetProperty("hits");
        Assert.Equal(TestPaths.VariantSources[1] + ".jpg", hits[0].GetProperty("path").GetString());

        // The bombs and the 400-megapixel image were refused from their headers: the gateway never
        // came near the memory a decode of one of them would take (1.2 GB for the 20000 x 20000; the gateway itself, model loaded, uses about 400 MB).
        output.WriteLine($"{corpus.Count} files searched and uploaded; gateway peak resident memory {gateway.PeakResidentBytes >> 20} MB");
        Assert.True(gateway.PeakResidentBytes < 800L << 20, $"peak resident memory {gateway.PeakResidentBytes >> 20} MB");
    }

    [Fact]
    public async Task Hostile_files_dropped_into_the_folder_are_indexed_or_recorded_as_failed_with_their_reason()
    {
        var folder = Directory.CreateDirectory(Path.Combine(gateway.Library, "dropped")).FullName;
        foreach (var file in corpus)
        {
            await File.WriteAllBytesAsync(Path.Combine(folder, file.Name), file.Bytes);
        }

        var paths = corpus.Select(f => "dropped/" + f.Name).ToList();
        Dictionary<string, JsonElement> states = [];
        await gateway.WaitUntilAsync(async () =>
        {
            var answer = await gateway.Client.GetFromJsonAsync<JsonElement>("api/files?" + string.Join('&', paths.Select(p => "path=" + Uri.EscapeDataString(p)))).ConfigureAwait(false);
            states = answer.GetProperty("files").EnumerateArray().ToDictionary(f => f.GetProperty("path").GetString()!, f => f);
            return states.Values.All(s => s.GetProperty("state").GetString() is "indexed" or "failed");
        }, "every dropped file to be indexed or failed");

        var wrong = new List<string>();
        foreach (var file in corpus)
        {
            var state = states["dropped/" + file.Name];
            var got = state.GetProperty("state").GetString();
            var expected = file.Expect switch
            {
                Expect.Accepted => ["indexed"],
                Expect.AcceptedOrCorrupt => new[] { "indexed", "failed" },
                _ => ["failed"],
            };
            if (!expected.Contains(got))
            {
                wrong.Add($"{file.Name} ({file.Why}): {got}, expected {string.Join(" or ", expected)}: {state}");
            }

            if (got == "failed" && string.IsNullOrWhiteSpace(state.GetProperty("reason").GetString()))
            {
                wrong.Add($"{file.Name}: failed without a reason");
            }
        }

        Assert.True(wrong.Count == 0, string.Join("\n", wrong));
        var status = await Status();
        Assert.Equal(0, status.GetProperty("pending").GetInt32());
        Assert.Contains(status.GetProperty("failures").EnumerateArray(), f => f.GetProperty("path").GetString() == "dropped/huge-20000.png" &&
            f.GetProperty("reason").GetString()!.Contains("400000000 pixels", StringComparison.Ordinal));
        Assert.Equal(HttpStatusCode.OK, (await gateway.Client.GetAsync("healthz")).StatusCode);
        output.WriteLine($"{corpus.Count} files ingested: {states.Values.Count(s => s.GetProperty("state").GetString() == "indexed")} indexed, " +
            $"{states.Values.Count(s => s.GetProperty("state").GetString() == "failed")} failed; gateway peak resident memory {gateway.PeakResidentBytes >> 20} MB");
        Assert.True(gateway.PeakResidentBytes < 800L << 20, $"peak resident memory {gateway.PeakResidentBytes >> 20} MB");
    }

    [Fact]
    public async Task Ids_paths_and_links_cannot_reach_outside_the_library()
    {
        // Ids are 32 lowercase hex characters; anything else is refused before it is used.
        string[] ids = ["..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e", "..%5C..%5Cwindows", new string('A', 32), new string('0', 31) + "%00", new string('0', 33),
            "%C0%AE%C0%AE%2Fetc", "0123456789abcdef0123456789abcdeg", "passwd", "%252e%252e%252f"];
        foreach (var id in ids)
        {
            foreach (var (method, url) in new[]
                     {
                         (HttpMethod.Get, $"api/images/{id}"), (HttpMethod.Get, $"api/images/{id}/thumbnail"), (HttpMethod.Get, $"api/images/{id}/files"),
                         (HttpMethod.Post, $"api/search/by-id/{id}"), (HttpMethod.Delete, $"api/images/{id}"),
                     })
            {
                using var request = new HttpRequestMessage(method, new Uri(gateway.Address, url));
                request.Headers.Add("X-Api-Key", Key);
                var response = await gateway.Client.SendAsync(request);
                Assert.True(response.StatusCode is HttpStatusCode.BadRequest or HttpStatusCode.NotFound, $"{method} {url}: {response.StatusCode}");
                Assert.DoesNotContain("root:", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            }
        }

        foreach (var path in new[] { "../outside.jpg", "/etc/passwd", "a/../../b.jpg", "..\\..\\x.jpg", "a%00b.jpg", "./x.jpg", "a//b.jpg" })
        {
            var response = await gateway.Client.GetAsync("api/files?path=" + Uri.EscapeDataString(path).Replace("%2500", "%00", StringComparison.Ordinal));
            await UploadTests.AssertProblemAsync(response, HttpStatusCode.BadRequest, "library-relative");
        }

        // A symbolic link in the folder to a photo outside it: scans skip links, and so does the
        // watcher now (it used to index it and serve the outside file, until the next rescan dropped it).
        var outside = Path.Combine(root, "outside.jpg");
        File.Copy(Path.Combine(TestPaths.Photos, "nature-lake.jpg"), outside);
        File.CreateSymbolicLink(Path.Combine(gateway.Library, "link.jpg"), outside);
        var marker = Path.Combine(gateway.Library, "after-link.jpg");
        File.Copy(Path.Combine(TestPaths.Photos, "nature-tree.jpg"), marker);
        await gateway.WaitUntilAsync(async () => await StateAsync("after-link.jpg").ConfigureAwait(false) == "indexed", "a file added after the link to be indexed");
        Assert.Equal("missing", await StateAsync("link.jpg"));
        var lake = await File.ReadAllBytesAsync(outside);
        using var query = Form("q.jpg", lake);
        var hits = (await (await gateway.Client.PostAsync("api/search", query)).Content.ReadFromJsonAsync<JsonElement>()).GetProperty("hits");
        Assert.DoesNotContain(hits.EnumerateArray(), h => h.GetProperty("path").GetString() == "link.jpg");
    }

    [Fact]
    public async Task Deletes_need_the_key_and_remove_every_file_holding_the_image()
    {
        var photo = await File.ReadAllBytesAsync(Path.Combine(TestPaths.Photos, "nature-moon.jpg"));
        string? id = null;
        foreach (var name in new[] { "moon-a.jpg", "moon-b.jpg" })
        {
            using var upload = new HttpRequestMessage(HttpMethod.Post, "api/images") { Content = Form(name, photo) };
            upload.Headers.Add("X-Api-Key", Key);
            var response = await gateway.Client.SendAsync(upload);
            Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
            id = (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("images")[0].GetProperty("id").GetString();
        }

        await gateway.WaitUntilAsync(async () => await StateAsync("uploads/moon-a.jpg").ConfigureAwait(false) == "indexed" &&
            await StateAsync("uploads/moon-b.jpg").ConfigureAwait(false) == "indexed", "both copies to be indexed");
        var files = await gateway.Client.GetFromJsonAsync<JsonElement>($"api/images/{id}/files");
        Assert.Equal(["uploads/moon-a.jpg", "uploads/moon-b.jpg"], files.GetProperty("files").EnumerateArray().Select(f => f.GetString()));

        await UploadTests.AssertProblemAsync(await gateway.Client.DeleteAsync($"api/images/{id}"), HttpStatusCode.Unauthorized, "X-Api-Key");
        await UploadTests.AssertProblemAsync(await DeleteAsync(id!, Key + "x"), HttpStatusCode.Unauthorized, "API key");
        using (var crossSite = new HttpRequestMessage(HttpMethod.Delete, $"api/images/{id}"))
        {
            crossSite.Headers.Add("X-Api-Key", Key);
            crossSite.Headers.Add("Sec-Fetch-Site", "cross-site");
            await UploadTests.AssertProblemAsync(await gateway.Client.SendAsync(crossSite), HttpStatusCode.Forbidden, "own page");
        }

        await UploadTests.AssertProblemAsync(await DeleteAsync(new string('0', 32), Key), HttpStatusCode.NotFound, "No file");
        Assert.True(File.Exists(Path.Combine(gateway.Library, "uploads", "moon-a.jpg")), "refused deletes removed nothing");

        var deleted = await DeleteAsync(id!, Key);
        Assert.Equal(HttpStatusCode.Accepted, deleted.StatusCode);
        var body = await deleted.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal(["uploads/moon-a.jpg", "uploads/moon-b.jpg"], body.GetProperty("deleted").EnumerateArray().Select(f => f.GetString()));
        Assert.False(File.Exists(Path.Combine(gateway.Library, "uploads", "moon-a.jpg")));
        Assert.False(File.Exists(Path.Combine(gateway.Library, "uploads", "moon-b.jpg")));

        // The watcher sees the files go and the image leaves the index.
        await gateway.WaitUntilAsync(async () => (await gateway.Client.PostAsync($"api/search/by-id/{id}", null).ConfigureAwait(false)).StatusCode == HttpStatusCode.NotFound,
            "the deleted image to leave the index");
        Assert.Equal(HttpStatusCode.NotFound, (await gateway.Client.GetAsync($"api/images/{id}")).StatusCode);
    }

    private Task<HttpResponseMessage> DeleteAsync(string id, string key)
    {
        var request = new HttpRequestMessage(HttpMethod.Delete, $"api/images/{id}");
        request.Headers.Add("X-Api-Key", key);
        return gateway.Client.SendAsync(request);
    }

    private async Task<string?> StateAsync(string path) =>
        (await gateway.Client.GetFromJsonAsync<JsonElement>($"api/files?path={Uri.EscapeDataString(path)}").ConfigureAwait(false))
            .GetProperty("files")[0].GetProperty("state").GetString();

    private async Task<JsonElement> Status() =>
        await gateway.Client.GetFromJsonAsync<JsonElement>("api/status").ConfigureAwait(false);

    private static MultipartFormDataContent Form(string name, byte[] bytes) => UploadTests.Form((name, bytes));

    /// <summary>Records a wrong status, or an error without an RFC 7807 body; 5xx is always wrong.</summary>
    private static async Task CheckAsync(HttpResponseMessage response, int[] allowed, string what, List<string> wrong)
    {
        var status = (int)response.StatusCode;
        var body = await response.Content.ReadAsStringAsync();
        if (!allowed.Contains(status))
        {
            wrong.Add($"{what}: {status} (expected {string.Join(" or ", allowed)}): {body[..Math.Min(body.Length, 300)]}");
            return;
        }

        if (status >= 400)
        {
            var problem = JsonDocument.Parse(body).RootElement;
            if (response.Content.Headers.ContentType?.MediaType != "application/problem+json" || problem.GetProperty("status").GetInt32() != status ||
                string.IsNullOrWhiteSpace(problem.GetProperty("detail").GetString()))
            {
                wrong.Add($"{what}: {status} without a problem body with a detail: {body}");
            }
        }
    }
}
