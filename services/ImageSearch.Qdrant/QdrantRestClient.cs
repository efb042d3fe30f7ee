using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace ImageSearch.Qdrant;

/// <summary>
/// HTTP transport to one Qdrant server: base address, <c>api-key</c> header, timeout, JSON bodies, and
/// the mapping of failures onto <see cref="QdrantException"/> / <see cref="QdrantUnavailableException"/>.
/// Knows nothing about points or collections.
/// </summary>
internal sealed class QdrantRestClient : IDisposable
{
    // Enough of a non-JSON error body (a proxy's HTML page) to recognise it in a log.
    private const int BodyExcerptLength = 200;

    private static readonly MediaTypeHeaderValue JsonMediaType = new("application/json");

    private readonly HttpClient _http;
    private readonly TimeSpan _timeout;

    /// <param name="options">Url, ApiKey and Timeout are used.</param>
    /// <param name="handler">
    /// Sends the requests; not disposed here. Null: an owned <see cref="SocketsHttpHandler"/> whose pooled
    /// connections are recycled every few minutes, so a long-lived store notices DNS changes.
    /// </param>
    public QdrantRestClient(QdrantOptions options, HttpMessageHandler? handler)
    {
        _http = handler is null
            ? new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) }, disposeHandler: true)
            : new HttpClient(handler, disposeHandler: false);

        // A trailing slash keeps a path prefix (reverse proxy) when relative paths are resolved against it.
        _http.BaseAddress = new Uri(options.Url.EndsWith('/') ? options.Url : options.Url + "/", UriKind.Absolute);
        _http.Timeout = options.Timeout;
        _timeout = options.Timeout;
        if (!string.IsNullOrEmpty(options.ApiKey))
        {
            _http.DefaultRequestHeaders.Add("api-key", options.ApiKey);
        }
    }

    public Uri BaseAddress => _http.BaseAddress!;

    /// <summary>A JSON request body (buffered, so it has a Content-Length).</summary>
    public static ByteArrayContent Json<T>(T value, JsonTypeInfo<T> type)
    {
        var content = new ByteArrayContent(JsonSerializer.SerializeToUtf8Bytes(value, type));
        content.Headers.ContentType = JsonMediaType;
        return content;
    }

    /// <summary>Sends a request and returns the <c>result</c> of Qdrant's JSON envelope.</summary>
    /// <param name="method">HTTP method.</param>
    /// <param name="path">Path and query relative to the base address, without a leading '/'.</param>
    /// <param name="content">Request body, or null.</param>
    /// <param name="resultType">Type of the envelope.</param>
    /// <param name="cancellationToken">Cancels the request (then <see cref="OperationCanceledException"/> propagates).</param>
    public async Task<TResult> SendAsync<TResult>(
        HttpMethod method, string path, HttpContent? content, JsonTypeInfo<QdrantResponse<TResult>> resultType, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(method, new Uri(path, UriKind.Relative)) { Content = content };
        using var response = await SendCoreAsync(request, cancellationToken).ConfigureAwait(false);
        await ThrowIfFailedAsync(request, response, cancellationToken).ConfigureAwait(false);
        QdrantResponse<TResult>? envelope;
        try
        {
            envelope = await response.Content.ReadFromJsonAsync(resultType, cancellationToken).ConfigureAwait(false);
        }
        catch (JsonException ex)
        {
            throw new QdrantException($"Qdrant's answer to {Describe(request)} is not the documented JSON: {ex.Message}", response.StatusCode, null, ex);
        }

        return envelope is { Result: { } result }
            ? result
            : throw new QdrantException($"Qdrant's answer to {Describe(request)} has no result.", response.StatusCode, null);
    }

    /// <summary>Sends a GET whose answer is plain text (the health endpoints) and returns the text.</summary>
    public async Task<string> GetTextAsync(string path, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(path, UriKind.Relative));
        using var response = await SendCoreAsync(request, cancellationToken).ConfigureAwait(false);
        await ThrowIfFailedAsync(request, response, cancellationToken).ConfigureAwait(false);
        return await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
    }

    public void Dispose() => _http.Dispose();

    private async Task<HttpResponseMessage> SendCoreAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        try
        {
            // Default completion option: the body is buffered inside the call, so Timeout covers it too.
            return await _http.SendAsync(request, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (TaskCanceledException ex)
        {
            // Not the caller's token: HttpClient.Timeout elapsed.
            var message = $"Qdrant did not answer {Describe(request)} within {_timeout.TotalSeconds.ToString(CultureInfo.InvariantCulture)} s.";
            throw new QdrantUnavailableException(message, null, null, new TimeoutException(message, ex));
        }
        catch (HttpRequestException ex)
        {
            throw new QdrantUnavailableException($"Could not reach Qdrant at {BaseAddress} for {Describe(request)}: {ex.Message}", ex.StatusCode, null, ex);
        }
    }

    private static async Task ThrowIfFailedAsync(HttpRequestMessage request, HttpResponseMessage response, CancellationToken cancellationToken)
    {
        if (response.IsSuccessStatusCode)
        {
            return;
        }

        var body = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
        var serverError = ReadServerError(body);
        var detail = serverError ?? (string.IsNullOrWhiteSpace(body) ? response.ReasonPhrase : Excerpt(body));
        var status = response.StatusCode;
        var message = $"Qdrant answered {Describe(request)} with {(int)status} {status}: {detail}";
        if ((int)status >= 500 || status == HttpStatusCode.TooManyRequests)
        {
            throw new QdrantUnavailableException(message, status, serverError);
        }

        throw new QdrantException(message, status, serverError);
    }

    /// <summary><c>status.error</c> of an ErrorResponse body, or null for any other body.</summary>
    private static string? ReadServerError(string body)
    {
        try
        {
            using var document = JsonDocument.Parse(body);
            return document.RootElement.ValueKind == JsonValueKind.Object &&
                   document.RootElement.TryGetProperty("status", out var status) &&
                   status.ValueKind == JsonValueKind.Object &&
                   status.TryGetProperty("error", out var error) &&
                   error.ValueKind == JsonValueKind.String
                ? error.GetString()
                : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static string Excerpt(string body) =>
        body.Length <= BodyExcerptLength ? body.Trim() : string.Concat(body.AsSpan(0, BodyExcerptLength).Trim(), "...");

    // Method, path and query, e.g. "PUT /collections/c/points?wait=true" (HttpClient makes the URI absolute when sending).
    private static string Describe(HttpRequestMessage request) =>
        $"{request.Method} {(request.RequestUri is { IsAbsoluteUri: true } uri ? uri.PathAndQuery : "/" + request.RequestUri)}";
}
