using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;

namespace ImageSearch.IntegrationTests;

/// <summary>A gateway over a small library of real photos, started once for the read-only API tests.</summary>
public sealed class IndexedGatewayFixture : IAsyncLifetime
{
    public const int LibrarySize = 17;

    private readonly string root = Directory.CreateTempSubdirectory("gateway-").FullName;

    internal GatewayProcess Gateway { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        var library = TestPaths.MakeLibrary(root, LibrarySize - TestPaths.VariantSources.Length);
        // Small limits so the oversized-request tests need little data.
        Gateway = await GatewayProcess.StartAsync(library, Path.Combine(root, "db"), "--Http:MaxRequestBytes=4000000", "--Http:MaxQueryPixels=40000000").ConfigureAwait(false);
        await Gateway.WaitUntilAsync(async () => (await Status(Gateway.Client).ConfigureAwait(false)).GetProperty("indexed").GetInt64() == LibrarySize,
            $"{LibrarySize} images to be indexed").ConfigureAwait(false);
    }

    public async Task DisposeAsync()
    {
        await Gateway.DisposeAsync().ConfigureAwait(false);
        Directory.Delete(root, recursive: true);
    }

    internal static async Task<JsonElement> Status(HttpClient client) =>
        await client.GetFromJsonAsync<JsonElement>("api/status").ConfigureAwait(false);
}

public sealed class GatewayApiTests(IndexedGatewayFixture fixture) : IClassFixture<IndexedGatewayFixture>
{
    private HttpClient Client => fixture.Gateway.Client;

    [Theory]
    [InlineData("crop50.jpg")]
    [InlineData("grey.jpg")]
    [InlineData("exif6.jpg")]
    [InlineData("webp")]
    public async Task A_modified_copy_of_a_photo_finds_the_original_first(string variant)
    {
        foreach (var source in TestPaths.VariantSources)
        {
            var hits = await SearchAsync(Path.Combine(TestPaths.Variants, $"{source}.{variant}"));
            Assert.Equal(source + ".jpg", hits[0].GetProperty("path").GetString());
        }
    }

    [Fact]
    public async Task A_box_query_finds_the_photo_pasted_inside_a_scene()
    {
        foreach (var source in TestPaths.VariantSources)
        {
            var box = (await File.ReadAllTextAsync(Path.Combine(TestPaths.Variants, source + ".in-scene.box"))).Trim();
            var hits = await SearchAsync(Path.Combine(TestPaths.Variants, source + ".in-scene.jpg"), box);
            Assert.Equal(source + ".jpg", hits[0].GetProperty("path").GetString());
        }
    }

    [Fact]
    public async Task Region_mode_finds_the_photo_inside_a_scene_without_a_box()
    {
        // Region mode searches sliding windows of the query as well as the whole of it: the photo
        // pasted into a larger scene is found among the top 10 for every scene, without its box.
        foreach (var source in TestPaths.VariantSources)
        {
            var scene = Path.Combine(TestPaths.Variants, source + ".in-scene.jpg");
            var withRegions = await SearchAsync(scene, top: 10, regions: true);
            var rank = withRegions.FindIndex(h => h.GetProperty("path").GetString() == source + ".jpg");
            Assert.True(rank >= 0, $"{source}: not in the top 10 with regions");
            Assert.Equal(withRegions.Count, withRegions.Select(h => h.GetProperty("id").GetString()).Distinct().Count());
            AssertRankedOrder(withRegions);
        }
    }

    [Fact]
    public async Task Rerank_moves_the_photo_inside_a_scene_up_and_marks_it_verified()
    {
        // Without a box the whole scene is the query: its CNN vector resembles the scene more than
        // the pasted photo. Local-feature verification finds the photo's matches inside the scene.
        var moved = 0;
        foreach (var source in TestPaths.VariantSources)
        {
            var scene = Path.Combine(TestPaths.Variants, source + ".in-scene.jpg");
            var reranked = await SearchAsync(scene, top: IndexedGatewayFixture.LibrarySize);
            var plain = await SearchAsync(scene, top: IndexedGatewayFixture.LibrarySize, rerank: false);
            var rank = reranked.FindIndex(h => h.GetProperty("path").GetString() == source + ".jpg");
            var plainRank = plain.FindIndex(h => h.GetProperty("path").GetString() == source + ".jpg");
            var hit = reranked[rank];
            Assert.True(hit.GetProperty("verified").GetBoolean(), $"{source}: not verified");
            Assert.True(hit.GetProperty("inliers").GetInt32() >= 8);
            Assert.True(rank <= plainRank, $"{source}: rank {rank} with re-ranking, {plainRank} without");
            moved += rank < plainRank ? 1 : 0;
            Assert.All(plain, h => Assert.Equal(JsonValueKind.Null, h.GetProperty("inliers").ValueKind));
            AssertRankedOrder(reranked);
        }

        Assert.True(moved > 0, "re-ranking moved no pasted photo up");
        await AssertFieldRefusedAsync("rerank", "maybe", "rerank must be true or false");
    }

    [Fact]
    public async Task Query_expansion_keeps_the_original_first_and_the_hits_distinct()
    {
        // Expanding a crop's query by its top neighbours must not lose the photo it was cut from.
        foreach (var source in TestPaths.VariantSources)
        {
            var hits = await SearchAsync(Path.Combine(TestPaths.Variants, source + ".crop50.jpg"), expand: 5);
            Assert.Equal(source + ".jpg", hits[0].GetProperty("path").GetString());
            Assert.Equal(hits.Count, hits.Select(h => h.GetProperty("id").GetString()).Distinct().Count());
        }

        await AssertFieldRefusedAsync("expand", "51", "expand must be an integer between 0 and 50");
    }

    [Fact]
    public async Task A_gateway_configured_for_database_side_augmentation_rescores_the_same_candidates_and_keeps_each_source_first()
    {
        // The same photos as the fixture's library, in a gateway of their own with Augmentation:Neighbours=3.
        var root = Directory.CreateTempSubdirectory("gateway-dba-").FullName;
        try
        {
            var library = TestPaths.MakeLibrary(root, IndexedGatewayFixture.LibrarySize - TestPaths.VariantSources.Length);
            await using var augmented = await GatewayProcess.StartAsync(library, Path.Combine(root, "db"), "--Augmentation:Neighbours=3");
            await augmented.WaitUntilAsync(async () => (await IndexedGatewayFixture.Status(augmented.Client)).GetProperty("indexed").GetInt64() == IndexedGatewayFixture.LibrarySize,
                $"{IndexedGatewayFixture.LibrarySize} images to be indexed");
            foreach (var source in TestPaths.VariantSources)
            {
                var query = Path.Combine(TestPaths.Variants, source + ".crop50.jpg");
                var plain = await SearchAsync(Client, query, top: IndexedGatewayFixture.LibrarySize, rerank: false);
                var rescored = await SearchAsync(augmented.Client, query, top: IndexedGatewayFixture.LibrarySize, rerank: false);
                Assert.Equal(source + ".jpg", rescored[0].GetProperty("path").GetString());
                Assert.Equal(Paths(plain).Order(StringComparer.Ordinal), Paths(rescored).Order(StringComparer.Ordinal));
                Assert.NotEqual(plain.Select(h => h.GetProperty("score").GetSingle()), rescored.Select(h => h.GetProperty("score").GetSingle()));
                AssertRankedOrder(rescored);
            }
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }

        static IEnumerable<string> Paths(List<JsonElement> hits) => hits.Select(h => h.GetProperty("path").GetString()!);
    }

    [Fact]
    public async Task Concurrent_searches_get_the_answers_they_get_one_at_a_time()
    {
        // Queries that arrive together share model runs (QueryEmbeddingQueue): each must still get
        // its own hits, in its own order, with the scores it gets alone (up to float rounding, since
        // a batch runs through other kernels than a single image).
        var queries = TestPaths.VariantSources.SelectMany(s => new[] { $"{s}.crop50.jpg", $"{s}.grey.jpg" })
            .Select(f => Path.Combine(TestPaths.Variants, f)).ToList();
        var alone = new List<List<JsonElement>>();
        foreach (var q in queries)
        {
            alone.Add(await SearchAsync(q, top: 3, rerank: false));
        }

        var together = await Task.WhenAll(queries.Select(q => SearchAsync(q, top: 3, rerank: false)));

        for (var i = 0; i < queries.Count; i++)
        {
            Assert.Equal(alone[i][0].GetProperty("id").GetString(), together[i][0].GetProperty("id").GetString());
            foreach (var (a, b) in alone[i].Zip(together[i]))
            {
                if (a.GetProperty("id").GetString() == b.GetProperty("id").GetString())
                {
                    Assert.Equal(a.GetProperty("score").GetDouble(), b.GetProperty("score").GetDouble(), 1e-3);
                }
            }
        }
    }

    [Fact]
    public async Task An_invalid_regions_field_is_a_problem() =>
        await AssertFieldRefusedAsync("regions", "sometimes", "regions must be true or false");

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_search_says_where_its_time_went(bool rerank)
    {
        using var form = Form(await File.ReadAllBytesAsync(Path.Combine(TestPaths.Variants, "outdoors-school2.crop50.jpg")), "q.jpg");
        form.Add(new StringContent(rerank ? "true" : "false"), "rerank");
        using var response = await Client.PostAsync("api/search", form);
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        // Server-Timing: every phase once, with a duration, inside the handler's total.
        var metrics = string.Join(", ", response.Headers.GetValues("Server-Timing")).Split(", ")
            .Select(m => (Name: m[..m.IndexOf(';', StringComparison.Ordinal)], Ms: double.Parse(m[(m.LastIndexOf("dur=", StringComparison.Ordinal) + 4)..], System.Globalization.CultureInfo.InvariantCulture)))
            .ToDictionary(m => m.Name, m => m.Ms);
        Assert.Equal(["form", "embed", "knn", "sift", "features", "verify", "total"], metrics.Keys);
        Assert.All(metrics.Values, ms => Assert.True(ms >= 0));
        Assert.True(metrics["total"] + 0.01 >= metrics["form"] + body.GetProperty("embedMs").GetDouble() + body.GetProperty("searchMs").GetDouble(), body.ToString());

        // The body's phases are the same figures; those of re-ranking ran only when asked for.
        var phases = body.GetProperty("phases");
        var after = phases.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble());
        Assert.Equal(["neighboursMs", "queryFeaturesWaitMs", "featureReadMs", "verifyMs"], after.Keys);
        Assert.Equal(metrics["embed"], body.GetProperty("embedMs").GetDouble(), 3);
        Assert.Equal(metrics["verify"], after["verifyMs"], 3);
        Assert.True(after.Values.Sum() <= body.GetProperty("searchMs").GetDouble() + 0.01, body.ToString());
        Assert.True(after["neighboursMs"] > 0);
        Assert.Equal(rerank, after["featureReadMs"] > 0);
        Assert.Equal(rerank, after["verifyMs"] > 0);
        if (!rerank)
        {
            Assert.Equal(0, after["queryFeaturesWaitMs"]);
        }
    }

    [Fact]
    public async Task Hits_carry_scores_in_descending_order_and_working_urls()
    {
        var hits = await SearchAsync(Path.Combine(TestPaths.Variants, "outdoors-school2.crop50.jpg"), top: 5);
        Assert.Equal(5, hits.Count);
        AssertRankedOrder(hits);
        var plain = await SearchAsync(Path.Combine(TestPaths.Variants, "outdoors-school2.crop50.jpg"), top: 5, rerank: false);
        var scores = plain.Select(h => h.GetProperty("score").GetSingle()).ToList();
        Assert.Equal(scores.OrderDescending(), scores);

        var first = hits[0];
        var original = await Client.GetAsync(first.GetProperty("imageUrl").GetString());
        Assert.Equal(HttpStatusCode.OK, original.StatusCode);
        Assert.Equal("image/jpeg", original.Content.Headers.ContentType?.MediaType);
        Assert.Equal(await File.ReadAllBytesAsync(Path.Combine(fixture.Gateway.Library, "outdoors-school2.jpg")), await original.Content.ReadAsByteArrayAsync());

        var thumb = await Client.GetAsync(first.GetProperty("thumbnailUrl").GetString());
        Assert.Equal(HttpStatusCode.OK, thumb.StatusCode);
        Assert.Equal("image/jpeg", thumb.Content.Headers.ContentType?.MediaType);
        var bytes = await thumb.Content.ReadAsByteArrayAsync();
        Assert.True(bytes.Length > 1000 && bytes[0] == 0xFF && bytes[1] == 0xD8, "thumbnail is a JPEG");
    }

    [Fact]
    public async Task A_batch_of_queries_is_answered_in_order_with_its_boxes()
    {
        var box = (await File.ReadAllTextAsync(Path.Combine(TestPaths.Variants, "outdoors-school2.in-scene.box"))).Trim();
        var queries = new (string File, string Box, string Expected)[]
        {
            ("nature-flower-bed.crop50.jpg", "", "nature-flower-bed.jpg"),
            ("outdoors-school2.in-scene.jpg", box, "outdoors-school2.jpg"),
            ("indoors-chalkboard.grey.jpg", "", "indoors-chalkboard.jpg"),
        };
        using var form = new MultipartFormDataContent();
        foreach (var q in queries)
        {
            form.Add(new ByteArrayContent(await File.ReadAllBytesAsync(Path.Combine(TestPaths.Variants, q.File))), "image", q.File);
            form.Add(new StringContent(q.Box), "box");
        }

        form.Add(new StringContent("3"), "top");
        var response = await Client.PostAsync("api/search/batch", form);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, body);
        var results = JsonDocument.Parse(body).RootElement.GetProperty("results");
        Assert.Equal(queries.Length, results.GetArrayLength());
        for (var i = 0; i < queries.Length; i++)
        {
            Assert.Equal(queries[i].Expected, results[i].GetProperty("hits")[0].GetProperty("path").GetString());
            Assert.Equal(3, results[i].GetProperty("hits").GetArrayLength());
        }

        using var mismatched = Form(await File.ReadAllBytesAsync(Path.Combine(TestPaths.Variants, "nature-flower-bed.crop50.jpg")), "a.jpg");
        mismatched.Add(new ByteArrayContent(await File.ReadAllBytesAsync(Path.Combine(TestPaths.Variants, "nature-flower-bed.crop50.jpg"))), "image", "b.jpg");
        mismatched.Add(new StringContent("1,1,5,5"), "box");
        await AssertProblemAsync(await Client.PostAsync("api/search/batch", mismatched), HttpStatusCode.BadRequest, "one per image");
    }

    [Fact]
    public async Task Search_by_id_returns_similar_images_without_the_image_itself()
    {
        var hits = await SearchAsync(Path.Combine(TestPaths.Variants, "nature-flower-bed.crop50.jpg"));
        var id = hits[0].GetProperty("id").GetString();
        var response = await Client.PostAsync($"api/search/by-id/{id}?top=4", null);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var similar = (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("hits").EnumerateArray().ToList();
        Assert.Equal(4, similar.Count);
        Assert.DoesNotContain(similar, h => h.GetProperty("id").GetString() == id);
        // A search by id has no request form or embedding to time: those are left out, not given as 0.
        var timing = string.Join(", ", response.Headers.GetValues("Server-Timing"));
        Assert.Contains("verify;", timing, StringComparison.Ordinal);
        Assert.Contains("total;", timing, StringComparison.Ordinal);
        Assert.DoesNotContain("form;", timing, StringComparison.Ordinal);
        Assert.DoesNotContain("embed;", timing, StringComparison.Ordinal);

        await AssertProblemAsync(await Client.PostAsync($"api/search/by-id/{new string('0', 32)}", null), HttpStatusCode.NotFound, "No indexed image");
        await AssertProblemAsync(await Client.PostAsync("api/search/by-id/not-an-id", null), HttpStatusCode.BadRequest, "not an image id");
        await AssertProblemAsync(await Client.GetAsync("api/images/..%2f..%2fetc%2fpasswd"), HttpStatusCode.BadRequest, "not an image id");
    }

    [Fact]
    public async Task Status_reports_the_model_and_the_counts()
    {
        var status = await IndexedGatewayFixture.Status(Client);
        Assert.StartsWith("mobilenet-v2-1.4-rmac@", status.GetProperty("model").GetString(), StringComparison.Ordinal);
        Assert.Equal("cpu", status.GetProperty("device").GetString());
        Assert.Equal(IndexedGatewayFixture.LibrarySize, status.GetProperty("indexed").GetInt64());
        Assert.Equal(IndexedGatewayFixture.LibrarySize, status.GetProperty("files").GetInt64());
        Assert.Equal(0, status.GetProperty("failed").GetInt64());
        Assert.Equal(HttpStatusCode.OK, (await Client.GetAsync("healthz")).StatusCode);
    }

    [Theory]
    [InlineData("broken-zero.jpg", HttpStatusCode.BadRequest, "image")]
    [InlineData("broken-text.jpg", HttpStatusCode.UnsupportedMediaType, "format")]
    [InlineData("broken-html.png", HttpStatusCode.UnsupportedMediaType, "format")]
    [InlineData("broken-truncated.jpg", HttpStatusCode.BadRequest, "")]
    [InlineData("broken-truncated.png", HttpStatusCode.BadRequest, "")]
    public async Task Broken_query_images_get_a_problem_response(string file, HttpStatusCode status, string detailContains)
    {
        using var form = Form(await File.ReadAllBytesAsync(Path.Combine(TestPaths.Variants, file)), file);
        await AssertProblemAsync(await Client.PostAsync("api/search", form), status, detailContains);
    }

    [Theory]
    [InlineData("1,2,3", "four integers")]
    [InlineData("0,0,-5,10", "width and height")]
    [InlineData("5000,5000,10,10", "outside")]
    public async Task A_bad_box_gets_400_with_the_reason(string box, string reason)
    {
        using var form = Form(await File.ReadAllBytesAsync(Path.Combine(TestPaths.Variants, "outdoors-school2.crop50.jpg")), "q.jpg");
        form.Add(new StringContent(box), "box");
        await AssertProblemAsync(await Client.PostAsync("api/search", form), HttpStatusCode.BadRequest, reason);
    }

    [Fact]
    public async Task Malformed_requests_get_problem_responses()
    {
        await AssertProblemAsync(await Client.PostAsync("api/search", new StringContent("{}", null, "application/json")), HttpStatusCode.UnsupportedMediaType, "multipart/form-data");
        using var noImage = new MultipartFormDataContent { { new StringContent("5"), "top" } };
        await AssertProblemAsync(await Client.PostAsync("api/search", noImage), HttpStatusCode.BadRequest, "'image'");
        using var badTop = Form(await File.ReadAllBytesAsync(Path.Combine(TestPaths.Variants, "outdoors-school2.crop50.jpg")), "q.jpg");
        badTop.Add(new StringContent("0"), "top");
        await AssertProblemAsync(await Client.PostAsync("api/search", badTop), HttpStatusCode.BadRequest, "top");
    }

    [Fact]
    public async Task Oversized_bodies_and_decompression_bombs_get_413()
    {
        // Expect: 100-continue lets the server refuse by Content-Length before the body is sent;
        // without it the server may close the connection while the client is still writing.
        using var big = Form(new byte[5_000_000], "big.jpg");
        using var request = new HttpRequestMessage(HttpMethod.Post, "api/search") { Content = big };
        request.Headers.ExpectContinue = true;
        var response = await Client.SendAsync(request);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);

        using var bomb = Form(await File.ReadAllBytesAsync(Path.Combine(TestPaths.Variants, "bomb-20000x20000.png")), "bomb.png");
        await AssertProblemAsync(await Client.PostAsync("api/search", bomb), HttpStatusCode.RequestEntityTooLarge, "pixels");
    }

    private async Task AssertFieldRefusedAsync(string field, string value, string message)
    {
        using var form = Form(await File.ReadAllBytesAsync(Path.Combine(TestPaths.Variants, "outdoors-school2.crop50.jpg")), "q.jpg");
        form.Add(new StringContent(value), field);
        var response = await Client.PostAsync("api/search", form);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains(message, await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    /// <summary>Verified hits first, most inliers first; then the rest by descending score.</summary>
    private static void AssertRankedOrder(List<JsonElement> hits)
    {
        var keys = hits.Select(h => (Verified: h.GetProperty("verified").GetBoolean(),
            Inliers: h.GetProperty("inliers").ValueKind == JsonValueKind.Number ? h.GetProperty("inliers").GetInt32() : 0,
            Score: h.GetProperty("score").GetSingle())).ToList();
        for (var i = 1; i < keys.Count; i++)
        {
            var (a, b) = (keys[i - 1], keys[i]);
            var ordered = a.Verified != b.Verified ? a.Verified
                : a.Verified ? a.Inliers > b.Inliers || (a.Inliers == b.Inliers && a.Score >= b.Score)
                : a.Score >= b.Score;
            Assert.True(ordered, $"hit {i} is out of order: {a} before {b}");
        }
    }

    private Task<List<JsonElement>> SearchAsync(string path, string? box = null, int top = 10, bool regions = false, int expand = 0, bool rerank = true) =>
        SearchAsync(Client, path, box, top, regions, expand, rerank);

    private static async Task<List<JsonElement>> SearchAsync(HttpClient client, string path, string? box = null, int top = 10, bool regions = false, int expand = 0, bool rerank = true)
    {
        using var form = Form(await File.ReadAllBytesAsync(path), Path.GetFileName(path));
        if (!rerank)
        {
            form.Add(new StringContent("false"), "rerank");
        }

        if (box is not null)
        {
            form.Add(new StringContent(box), "box");
        }

        if (regions)
        {
            form.Add(new StringContent("true"), "regions");
        }

        if (expand > 0)
        {
            form.Add(new StringContent(expand.ToString(System.Globalization.CultureInfo.InvariantCulture)), "expand");
        }

        form.Add(new StringContent(top.ToString(System.Globalization.CultureInfo.InvariantCulture)), "top");
        var response = await client.PostAsync("api/search", form);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, body);
        return JsonDocument.Parse(body).RootElement.GetProperty("hits").EnumerateArray().ToList();
    }

    private static MultipartFormDataContent Form(byte[] image, string name)
    {
        var content = new ByteArrayContent(image);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        return new MultipartFormDataContent { { content, "image", name } };
    }

    private static async Task AssertProblemAsync(HttpResponseMessage response, HttpStatusCode status, string detailContains)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(status == response.StatusCode, $"expected {status}, got {response.StatusCode}: {body}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = JsonDocument.Parse(body).RootElement;
        Assert.Equal((int)status, problem.GetProperty("status").GetInt32());
        var detail = problem.TryGetProperty("detail", out var d) ? d.GetString() ?? "" : "";
        Assert.Contains(detailContains, detail, StringComparison.OrdinalIgnoreCase);
    }
}
