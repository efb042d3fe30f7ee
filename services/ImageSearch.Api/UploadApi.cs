using System.Security.Cryptography;
using System.Text;
using ImageSearch.Imaging;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace ImageSearch.Api;

/// <summary>Answer of <c>POST /api/images</c>: where each file was stored and its content id; <see cref="StatusUrl"/> follows their ingestion.</summary>
public sealed record UploadResponse(IReadOnlyList<StoredUpload> Images, string StatusUrl);

/// <summary>What the web page needs to know about uploads (part of <c>GET /api/status</c> on a gateway that accepts them).</summary>
public sealed record UploadInfo(bool Enabled, bool ApiKeyRequired, string Folder, long MaxFileBytes, long MaxPixels, int MaxFiles, IReadOnlyList<string> Extensions, string? Problem);

/// <summary>Answer of <c>DELETE /api/images/{id}</c>: the files removed from the library; <see cref="StatusUrl"/> follows them out of the index.</summary>
public sealed record DeleteResponse(string Id, IReadOnlyList<string> Deleted, string StatusUrl);

/// <summary>
/// <c>POST /api/images</c>: multipart, one or more files, written into the watched folder (see
/// <see cref="UploadStore"/>) and answered 202 with their stored names and content ids; the watcher
/// ingests them as it does any file, and <c>GET /api/files?path=...</c> tells when they are indexed.
/// With <c>Http:ApiKey</c> set, the request needs the key in <c>X-Api-Key</c>. Browsers' cross-site
/// requests are refused (Sec-Fetch-Site / Origin), so a web page elsewhere cannot write into the library.
/// </summary>
public static class UploadApi
{
    public const string ApiKeyHeader = "X-Api-Key";

    /// <summary>Upload options, the store and the decoder it checks content with. Call after <see cref="ApiServices.AddImageSearchApi"/>.</summary>
    public static WebApplicationBuilder AddImageSearchUploads(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<UploadOptions>()
            .Bind(builder.Configuration.GetSection(UploadOptions.Section))
            .Configure<IConfiguration>((o, configuration) => o.LibraryRoot = configuration["Library:Root"] ?? "")
            .ValidateDataAnnotations()
            .ValidateOnStart();
        builder.Services.AddSingleton<IValidateOptions<UploadOptions>, UploadOptionsValidator>();
        builder.Services.AddVipsImageDecoder();
        builder.Services.AddSingleton<UploadStore>();
        builder.Services.AddHostedService<UploadStartupCheck>();
        return builder;
    }

    /// <summary>
    /// Maps the library writes when uploads are enabled: <c>POST /api/images</c> and
    /// <c>DELETE /api/images/{id}</c> (which deletes the files holding the image; the watcher then
    /// removes it from the index). Deleting needs <c>Http:ApiKey</c>: without a key it is refused.
    /// </summary>
    public static WebApplication MapUploadApi(this WebApplication app)
    {
        if (app.Services.GetRequiredService<IOptions<UploadOptions>>().Value.Enabled)
        {
            app.MapPost("/api/images", UploadAsync).DisableAntiforgery().WithTags("Images").WithRequestTimeout(Protection.UploadTimeoutPolicy);
            app.MapDelete("/api/images/{id}", DeleteAsync).WithTags("Images");
        }

        return app;
    }

    /// <summary>The upload settings as the page sees them, or null where this process takes no uploads.</summary>
    public static UploadInfo? Describe(IServiceProvider services)
    {
        if (services.GetService<UploadStore>() is not { } store)
        {
            return null;
        }

        var o = services.GetRequiredService<IOptions<UploadOptions>>().Value;
        var key = services.GetRequiredService<IOptions<HttpOptions>>().Value.ApiKey;
        return new UploadInfo(o.Enabled, !string.IsNullOrEmpty(key), o.Folder, o.MaxFileBytes, o.MaxPixels, o.MaxFiles,
            UploadStore.Extensions.Values.Distinct(StringComparer.Ordinal).ToList(), o.Enabled ? store.Problem : null);
    }

    internal static async Task<Results<Accepted<UploadResponse>, ProblemHttpResult>> UploadAsync(
        HttpRequest request, UploadStore store, IOptions<UploadOptions> uploadOptions, IOptions<HttpOptions> httpOptions, CancellationToken ct)
    {
        if (Authorize(request, httpOptions.Value.ApiKey, keyRequired: false) is { } denied)
        {
            return denied;
        }

        if (!request.HasFormContentType)
        {
            return SearchApi.Problem(StatusCodes.Status415UnsupportedMediaType, "Expected multipart/form-data",
                "Send the images as multipart/form-data, one or more file fields named 'image'.");
        }

        var o = uploadOptions.Value;
        // This endpoint takes several files: its body limit is Upload:MaxRequestBytes, not the search limit.
        if (request.HttpContext.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } bodyLimit)
        {
            bodyLimit.MaxRequestBodySize = o.MaxRequestBytes;
        }

        var form = await request.ReadFormAsync(new FormOptions { MultipartBodyLengthLimit = o.MaxRequestBytes, ValueCountLimit = o.MaxFiles + 64 }, ct).ConfigureAwait(false);
        var files = form.Files;
        if (files.Count == 0)
        {
            return SearchApi.Problem(StatusCodes.Status400BadRequest, "No file", "The form has no file; send one or more images as file fields named 'image'.");
        }

        if (files.Count > o.MaxFiles)
        {
            return SearchApi.Problem(StatusCodes.Status400BadRequest, "Too many files", $"{files.Count} files in one request; at most {o.MaxFiles} (Upload:MaxFiles).");
        }

        try
        {
            // Every file is checked before any is written: a request is stored whole or not at all.
            foreach (var file in files)
            {
                store.CheckSize(file.FileName, file.Length);
            }

            var checkedFiles = new List<CheckedUpload>(files.Count);
            foreach (var file in files)
            {
                var bytes = new byte[file.Length];
                await using (var stream = file.OpenReadStream())
                {
                    await stream.ReadExactlyAsync(bytes, ct).ConfigureAwait(false);
                }

                checkedFiles.Add(store.Check(file.FileName, bytes));
            }

            var stored = new List<StoredUpload>(checkedFiles.Count);
            foreach (var upload in checkedFiles)
            {
                stored.Add(await store.SaveAsync(upload, ct).ConfigureAwait(false));
            }

            var statusUrl = "/api/files?" + string.Join('&', stored.Select(s => "path=" + Uri.EscapeDataString(s.Path)));
            return TypedResults.Accepted(statusUrl, new UploadResponse(stored, statusUrl));
        }
        catch (UploadRejectedException e)
        {
            return SearchApi.Problem(e.Status, e.Title, e.Message);
        }
    }

    /// <summary>
    /// Deletes every file of the library that holds the image (all copies), answering 202 with their
    /// paths; the watcher sees them go and removes the image from the index, as for any deleted file.
    /// </summary>
    internal static async Task<Results<Accepted<DeleteResponse>, ProblemHttpResult>> DeleteAsync(
        string id, HttpRequest request, ISearchBackend backend, UploadStore store, IOptions<HttpOptions> httpOptions, CancellationToken ct)
    {
        if (Authorize(request, httpOptions.Value.ApiKey, keyRequired: true) is { } denied)
        {
            return denied;
        }

        if (!Core.ImageId.TryParse(id, out var imageId))
        {
            return ImagesApi.InvalidId(id);
        }

        var paths = await backend.GetFilePathsAsync(imageId, ImagesApi.MaxFiles, ct).ConfigureAwait(false);
        if (paths.Count == 0)
        {
            return ImagesApi.NotFound(id);
        }

        try
        {
            var deleted = paths.Where(store.DeleteLibraryFile).ToList();
            var statusUrl = "/api/files?" + string.Join('&', paths.Select(p => "path=" + Uri.EscapeDataString(p)));
            return TypedResults.Accepted(statusUrl, new DeleteResponse(imageId.Value, deleted, statusUrl));
        }
        catch (UploadRejectedException e)
        {
            return SearchApi.Problem(e.Status, e.Title, e.Message);
        }
    }

    /// <summary>
    /// 401 without the configured key (403 when <paramref name="keyRequired"/> and no key is
    /// configured); 403 for a browser's cross-site request. Null when allowed.
    /// </summary>
    private static ProblemHttpResult? Authorize(HttpRequest request, string? apiKey, bool keyRequired)
    {
        if (keyRequired && string.IsNullOrEmpty(apiKey))
        {
            return SearchApi.Problem(StatusCodes.Status403Forbidden, "Deleting needs an API key",
                "This server has no API key (Http:ApiKey), so nobody may delete files through it. Set Http:ApiKey and send it in the " + ApiKeyHeader + " header.");
        }

        if (!string.IsNullOrEmpty(apiKey))
        {
            var given = request.Headers[ApiKeyHeader].ToString();
            if (given.Length == 0)
            {
                return SearchApi.Problem(StatusCodes.Status401Unauthorized, "API key required",
                    $"Uploads and deletes on this server need its API key in the {ApiKeyHeader} header (Http:ApiKey is set).");
            }

            // Compared as hashes: constant time, whatever the lengths.
            if (!CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(given)), SHA256.HashData(Encoding.UTF8.GetBytes(apiKey))))
            {
                return SearchApi.Problem(StatusCodes.Status401Unauthorized, "Wrong API key", $"The {ApiKeyHeader} header does not hold this server's API key.");
            }
        }

        // A page on another site can make the browser post a form here. Browsers say where a request
        // comes from in Sec-Fetch-Site (trusted alone when present: it survives proxies that rewrite
        // Host); older ones at least send Origin. Clients that are not browsers send neither.
        var site = request.Headers["Sec-Fetch-Site"].ToString();
        var origin = request.Headers.Origin.ToString();
        var crossSite = site.Length > 0
            ? site is not ("same-origin" or "none")
            : origin.Length > 0 && (!Uri.TryCreate(origin, UriKind.Absolute, out var o) || !string.Equals(o.Authority, request.Host.Value, StringComparison.OrdinalIgnoreCase));
        return crossSite
            ? SearchApi.Problem(StatusCodes.Status403Forbidden, "Cross-site request refused", "Uploads and deletes are accepted from this server's own page or from clients that are not browsers.")
            : null;
    }
}

/// <summary>At start: says where uploads go, warns when they need no key, and checks the folder can be written.</summary>
internal sealed partial class UploadStartupCheck(UploadStore store, IOptions<UploadOptions> options, IOptions<HttpOptions> http, ILogger<UploadStartupCheck> logger) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (!options.Value.Enabled)
        {
            return Task.CompletedTask;
        }

        if (store.Probe() is { } problem)
        {
            LogNotWritable(logger, problem);
        }
        else
        {
            LogEnabled(logger, store.FolderPath);
        }

        if (string.IsNullOrEmpty(http.Value.ApiKey))
        {
            LogNoApiKey(logger, store.FolderPath);
        }
        else
        {
            LogApiKey(logger, UploadApi.ApiKeyHeader);
        }

        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(Level = LogLevel.Information, Message = "Uploads (POST /api/images) are written to {Folder}")]
    private static partial void LogEnabled(ILogger logger, string folder);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Uploads are enabled without an API key: anyone who can reach this server can add files to {Folder}, " +
        "and DELETE /api/images/{{id}} is refused until a key is set. Set Http:ApiKey (clients send it in X-Api-Key) or Upload:Enabled=false")]
    private static partial void LogNoApiKey(ILogger logger, string folder);

    [LoggerMessage(Level = LogLevel.Information, Message = "Uploads and deletes need the API key (header {Header})")]
    private static partial void LogApiKey(ILogger logger, string header);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Uploads are enabled but {Problem}; POST /api/images answers 503 until it is writable (or set Upload:Enabled=false)")]
    private static partial void LogNotWritable(ILogger logger, string problem);
}
