using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using ImageSearch.Core;
using ImageSearch.Pipeline;
using Microsoft.Extensions.Logging;

namespace ImageSearch.Api;

/// <summary>
/// The distributed gateway: sends each request to every configured query service in parallel, each
/// within its time budget, and merges the answers. Hits are merged (verified matches first, by
/// inlier count, then by score) and de-duplicated by id
/// (the same image may be held by several instances); a backend that fails or runs out of time is
/// left out and the answer is marked partial. A backend's 4xx (bad input) is passed on as it is.
/// </summary>
public sealed partial class RemoteSearchBackend(IHttpClientFactory clients, IOptions<GatewayOptions> options, ILogger<RemoteSearchBackend> logger) : ISearchBackend
{
    public const string HttpClientName = "query-services";

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    private Uri[] Backends => options.Value.QueryServices.Select(u => new Uri(u.EndsWith('/') ? u : u + "/")).ToArray();

    public async Task<SearchResponse> SearchAsync(byte[] image, BoundingBox? box, int top, bool exact, bool regions, int expand, bool rerank, CancellationToken ct)
    {
        var answers = await FanOutAsync(async (client, backend, token) =>
        {
            using var form = new MultipartFormDataContent { { new ByteArrayContent(image), "image", "query" } };
            if (box is { } b)
            {
                form.Add(new StringContent(b.ToString()), "box");
            }

            form.Add(new StringContent(top.ToString(CultureInfo.InvariantCulture)), "top");
            form.Add(new StringContent(exact ? "true" : "false"), "exact");
            form.Add(new StringContent(regions ? "true" : "false"), "regions");
            form.Add(new StringContent(expand.ToString(CultureInfo.InvariantCulture)), "expand");
            form.Add(new StringContent(rerank ? "true" : "false"), "rerank");
            using var response = await client.PostAsync(new Uri(backend, "api/search"), form, token).ConfigureAwait(false);
            return await ReadAsync<SearchResponse>(response, token).ConfigureAwait(false);
        }, ct).ConfigureAwait(false);
        return Merge(answers, top, box) ?? throw Unavailable(answers);
    }

    public async Task<IReadOnlyList<SearchResponse>> SearchManyAsync(IReadOnlyList<BatchQuery> queries, int top, bool exact, CancellationToken ct)
    {
        var answers = await FanOutAsync(async (client, backend, token) =>
        {
            using var form = new MultipartFormDataContent();
            foreach (var q in queries)
            {
                form.Add(new ByteArrayContent(q.Image), "image", "query");
                form.Add(new StringContent(q.Box?.ToString() ?? ""), "box");
            }

            form.Add(new StringContent(top.ToString(CultureInfo.InvariantCulture)), "top");
            form.Add(new StringContent(exact ? "true" : "false"), "exact");
            using var response = await client.PostAsync(new Uri(backend, "api/search/batch"), form, token).ConfigureAwait(false);
            return await ReadAsync<BatchSearchResponse>(response, token).ConfigureAwait(false);
        }, ct).ConfigureAwait(false);
        return queries.Select((q, i) => Merge(answers.Select(a => new Answer<SearchResponse>(a.Backend, a.Value?.Results[i], a.Error)).ToList(), top, q.Box)
            ?? throw Unavailable(answers)).ToList();
    }

    public async Task<SearchResponse?> SearchByIdAsync(ImageId id, int top, bool exact, bool rerank, CancellationToken ct)
    {
        var answers = await FanOutAsync(async (client, backend, token) =>
        {
            var uri = new Uri(backend, string.Create(CultureInfo.InvariantCulture, $"api/search/by-id/{id.Value}?top={top}&exact={(exact ? "true" : "false")}&rerank={(rerank ? "true" : "false")}"));
            using var response = await client.PostAsync(uri, null, token).ConfigureAwait(false);
            return response.StatusCode == HttpStatusCode.NotFound ? null : await ReadAsync<SearchResponse>(response, token).ConfigureAwait(false);
        }, ct).ConfigureAwait(false);
        if (answers.All(a => a.Error is null && a.Value is null))
        {
            return null;
        }

        return Merge(answers, top, null) ?? throw Unavailable(answers);
    }

    public async Task<ImageContent?> GetImageAsync(ImageId id, CancellationToken ct)
    {
        var answers = await FanOutAsync(async (client, backend, token) =>
        {
            using var response = await client.GetAsync(new Uri(backend, $"api/images/{id.Value}"), token).ConfigureAwait(false);
            if (response.StatusCode == HttpStatusCode.NotFound)
            {
                return null;
            }

            await EnsureSuccessAsync(response, token).ConfigureAwait(false);
            return new ImageContent(null, await response.Content.ReadAsByteArrayAsync(token).ConfigureAwait(false),
                response.Content.Headers.ContentType?.MediaType ?? "application/octet-stream");
        }, ct).ConfigureAwait(false);
        return answers.Select(a => a.Value).FirstOrDefault(v => v is not null)
            ?? (answers.All(a => a.Error is not null) ? throw Unavailable(answers) : null);
    }

    /// <summary>The union of every backend's answer; unavailable only when none answered.</summary>
    public async Task<IReadOnlyList<string>> GetFilePathsAsync(ImageId id, int limit, CancellationToken ct)
    {
        var answers = await FanOutAsync(async (client, backend, token) =>
        {
            using var response = await client.GetAsync(new Uri(backend, string.Create(CultureInfo.InvariantCulture, $"api/images/{id.Value}/files?limit={limit}")), token).ConfigureAwait(false);
            return await ReadAsync<ImageFilesResponse>(response, token).ConfigureAwait(false);
        }, ct).ConfigureAwait(false);
        if (answers.All(a => a.Value is null))
        {
            throw Unavailable(answers);
        }

        return answers.Where(a => a.Value is not null).SelectMany(a => a.Value!.Files).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).Take(limit).ToList();
    }

    public async Task<byte[]?> GetThumbnailAsync(ImageId id, int size, CancellationToken ct)
    {
        var answers = await FanOutAsync(async (client, backend, token) =>
        {
            using var response = await client.GetAsync(new Uri(backend, string.Create(CultureInfo.InvariantCulture, $"api/images/{id.Value}/thumbnail?size={size}")), token).ConfigureAwait(false);
            if (response.StatusCode == HttpStatusCode.NotFound)
            {
                return null;
            }

            await EnsureSuccessAsync(response, token).ConfigureAwait(false);
            return await response.Content.ReadAsByteArrayAsync(token).ConfigureAwait(false);
        }, ct).ConfigureAwait(false);
        return answers.Select(a => a.Value).FirstOrDefault(v => v is not null)
            ?? (answers.All(a => a.Error is not null) ? throw Unavailable(answers) : null);
    }

    /// <summary>Counts summed over the backends (each owns its own index).</summary>
    public async Task<StatusResponse> GetStatusAsync(CancellationToken ct)
    {
        var answers = await FanOutAsync(async (client, backend, token) =>
        {
            using var response = await client.GetAsync(new Uri(backend, "api/status"), token).ConfigureAwait(false);
            return await ReadAsync<StatusResponse>(response, token).ConfigureAwait(false);
        }, ct).ConfigureAwait(false);
        var ok = answers.Where(a => a.Value is not null).Select(a => a.Value!).ToList();
        if (ok.Count == 0)
        {
            throw Unavailable(answers);
        }

        return new StatusResponse(ok[0].Model, ok[0].Device, ok[0].Dimensions, ok.Sum(s => s.Indexed), ok.Sum(s => s.Files),
            ok.Sum(s => s.Failed), ok.Sum(s => s.Pending), ok.SelectMany(s => s.Failures).ToList(),
            QueueWaitP50Ms: ok.Max(s => s.QueueWaitP50Ms), QueueWaitP99Ms: ok.Max(s => s.QueueWaitP99Ms), LastIndexedAt: ok.Max(s => s.LastIndexedAt));
    }

    /// <summary>Every backend's recent images, newest first by when they were added, copies folded.</summary>
    public async Task<IReadOnlyList<ImageDto>> ListRecentAsync(int limit, CancellationToken ct)
    {
        var answers = await FanOutAsync(async (client, backend, token) =>
        {
            using var response = await client.GetAsync(new Uri(backend, string.Create(CultureInfo.InvariantCulture, $"api/images?recent={limit}")), token).ConfigureAwait(false);
            return await ReadAsync<ImageListResponse>(response, token).ConfigureAwait(false);
        }, ct).ConfigureAwait(false);
        var ok = answers.Where(a => a.Value is not null).Select(a => a.Value!).ToList();
        if (ok.Count == 0)
        {
            throw Unavailable(answers);
        }

        // One backend: its own order (most recently recorded first). Several: merged by AddedAt.
        return ok.Count == 1
            ? ok[0].Images
            : ok.SelectMany(r => r.Images).GroupBy(i => i.Id, StringComparer.Ordinal).Select(g => g.First())
                .OrderByDescending(i => i.AddedAt).ThenBy(i => i.Path, StringComparer.Ordinal).Take(limit).ToList();
    }

    /// <summary>Each path's state from the backend that knows the most about it (indexed or failed over pending over missing).</summary>
    public async Task<IReadOnlyList<FileStateDto>> GetFileStatesAsync(IReadOnlyList<string> paths, CancellationToken ct)
    {
        var query = string.Join('&', paths.Select(p => "path=" + Uri.EscapeDataString(p)));
        var answers = await FanOutAsync(async (client, backend, token) =>
        {
            using var response = await client.GetAsync(new Uri(backend, "api/files?" + query), token).ConfigureAwait(false);
            return await ReadAsync<FileStatesResponse>(response, token).ConfigureAwait(false);
        }, ct).ConfigureAwait(false);
        var ok = answers.Where(a => a.Value is not null).Select(a => a.Value!).ToList();
        if (ok.Count == 0)
        {
            throw Unavailable(answers);
        }

        return paths.Select((path, i) => ok.Select(r => r.Files[i]).MaxBy(f => FileStates.Rank(f.State))!).ToList();
    }

    private sealed record Answer<T>(Uri Backend, T? Value, Exception? Error);

    private async Task<List<Answer<T>>> FanOutAsync<T>(Func<HttpClient, Uri, CancellationToken, Task<T?>> call, CancellationToken ct)
    {
        var budget = options.Value.BackendTimeout;
        var tasks = Backends.Select(async backend =>
        {
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            cts.CancelAfter(budget);
            try
            {
                var client = clients.CreateClient(HttpClientName);
                return new Answer<T>(backend, await call(client, backend, cts.Token).ConfigureAwait(false), null);
            }
            catch (BackendProblemException)
            {
                throw;
            }
            catch (Exception e) when (e is HttpRequestException or OperationCanceledException or JsonException && !ct.IsCancellationRequested)
            {
                LogBackendFailed(logger, e, backend);
                return new Answer<T>(backend, default, e);
            }
        }).ToList();
        return [.. await Task.WhenAll(tasks).ConfigureAwait(false)];
    }

    private static SearchResponse? Merge(List<Answer<SearchResponse>> answers, int top, BoundingBox? box)
    {
        var ok = answers.Where(a => a.Value is not null).Select(a => a.Value!).ToList();
        if (ok.Count == 0)
        {
            return null;
        }

        // Verified matches (re-ranked by local features) first, by inlier count, as each backend
        // ranks them; then the rest by score.
        var hits = ok.SelectMany(r => r.Hits)
            .GroupBy(h => h.Id, StringComparer.Ordinal)
            .Select(g => g.OrderByDescending(h => h.Verified).ThenByDescending(h => h.Inliers ?? 0).ThenByDescending(h => h.Score).First())
            .OrderByDescending(h => h.Verified)
            .ThenByDescending(h => h.Verified ? h.Inliers ?? 0 : 0)
            .ThenByDescending(h => h.Score)
            .ThenBy(h => h.Id, StringComparer.Ordinal)
            .Take(top)
            .ToList();
        var errors = answers.Where(a => a.Error is not null).Select(a => $"{a.Backend}: {Describe(a.Error!)}").ToList();
        return new SearchResponse(ok[0].Model, top, box?.ToString(), ok.Max(r => r.EmbedMs), ok.Max(r => r.SearchMs), hits,
            errors.Count > 0, errors.Count > 0 ? errors : null, SearchPhases.Slowest(ok.Select(r => r.Phases)));
    }

    private static async Task<T?> ReadAsync<T>(HttpResponseMessage response, CancellationToken ct)
    {
        await EnsureSuccessAsync(response, ct).ConfigureAwait(false);
        return await response.Content.ReadFromJsonAsync<T>(Json, ct).ConfigureAwait(false);
    }

    /// <summary>4xx with a problem body: the client's fault, passed on. 5xx: this backend failed.</summary>
    private static async Task EnsureSuccessAsync(HttpResponseMessage response, CancellationToken ct)
    {
        var status = (int)response.StatusCode;
        if (status is >= 400 and < 500)
        {
            var problem = await response.Content.ReadFromJsonAsync<JsonElement>(Json, ct).ConfigureAwait(false);
            var title = problem.TryGetProperty("title", out var t) ? t.GetString() ?? "Bad request" : "Bad request";
            var detail = problem.TryGetProperty("detail", out var d) ? d.GetString() ?? "" : "";
            throw new BackendProblemException(status, title, detail);
        }

        if (!response.IsSuccessStatusCode)
        {
            throw new HttpRequestException($"HTTP {status}", null, response.StatusCode);
        }
    }

    private static BackendUnavailableException Unavailable<T>(List<Answer<T>> answers) =>
        new($"No query service answered: {string.Join("; ", answers.Select(a => $"{a.Backend}: {(a.Error is null ? "no answer" : Describe(a.Error))}"))}");

    private static string Describe(Exception e) => e is OperationCanceledException ? "over its time budget" : e.Message;

    [LoggerMessage(Level = LogLevel.Warning, Message = "Query service {Backend} failed; answering without it")]
    private static partial void LogBackendFailed(ILogger logger, Exception ex, Uri backend);
}
