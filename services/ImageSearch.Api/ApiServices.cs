using System.ComponentModel.DataAnnotations;
using ImageSearch.Core;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using BadHttpRequestException = Microsoft.AspNetCore.Http.BadHttpRequestException;

namespace ImageSearch.Api;

/// <summary>HTTP limits. Section "Http".</summary>
public sealed class HttpOptions
{
    public const string Section = "Http";

    /// <summary>Largest request body (a query image plus form fields).</summary>
    [Range(1024, 1L << 31)]
    public long MaxRequestBytes { get; set; } = 32L * 1024 * 1024;

    /// <summary>Largest number of pixels a query image may declare (checked on the header, before decoding).</summary>
    [Range(1, 1L << 34)]
    public long MaxQueryPixels { get; set; } = 100_000_000;

    /// <summary>
    /// When set, requests that change the library (uploads) must carry it in the <c>X-Api-Key</c>
    /// header. Searches and reads stay open. At least 16 characters, no spaces; empty = no key.
    /// </summary>
    [RegularExpression(@"^\S{16,}$", ErrorMessage = "Http:ApiKey must be at least 16 characters without spaces (or empty for no key).")]
    public string? ApiKey { get; set; }

    /// <summary>
    /// Longest a request may take, from its first byte to its answer (uploads: Upload:RequestTimeout);
    /// over it the request is cancelled and answered 503, so a client that stalls while sending holds
    /// nothing for longer.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "01:00:00")]
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(60);
}

/// <summary>The distributed gateway's backends. Section "Gateway".</summary>
public sealed class GatewayOptions
{
    public const string Section = "Gateway";

    /// <summary>Base URLs of the query services to fan out to; empty = answer in this process (embedded mode).</summary>
    public string[] QueryServices { get; set; } = [];

    /// <summary>Time budget per backend call; a backend over it is left out and the answer marked partial.</summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "00:05:00")]
    public TimeSpan BackendTimeout { get; set; } = TimeSpan.FromSeconds(10);
}

public static class ApiServices
{
    /// <summary>
    /// HTTP limits, ProblemDetails mapping and the search backend: remote (fan-out) when
    /// Gateway:QueryServices is set, in-process otherwise.
    /// </summary>
    public static WebApplicationBuilder AddImageSearchApi(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<GatewayOptions>().Bind(builder.Configuration.GetSection(GatewayOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddOptions<QueueMonitorOptions>().Bind(builder.Configuration.GetSection("Bus"));
        builder.Services.AddHttpClient(QueueMonitor.HttpClientName);
        builder.Services.AddSingleton<QueueMonitor>();
        if (IsRemote(builder.Configuration))
        {
            builder.Services.AddHttpClient(RemoteSearchBackend.HttpClientName);
            builder.Services.AddSingleton<ISearchBackend, RemoteSearchBackend>();
        }
        else
        {
            builder.Services.AddSingleton<ISearchBackend, LocalSearchBackend>();
        }

        builder.Services.AddOptions<HttpOptions>().Bind(builder.Configuration.GetSection(HttpOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        var maxBytes = builder.Configuration.GetSection(HttpOptions.Section).Get<HttpOptions>()?.MaxRequestBytes ?? new HttpOptions().MaxRequestBytes;
        builder.Services.Configure<KestrelServerOptions>(o => o.Limits.MaxRequestBodySize = maxBytes);
        builder.Services.Configure<FormOptions>(o =>
        {
            o.MultipartBodyLengthLimit = maxBytes;
            o.ValueCountLimit = 64;
        });
        builder.Services.AddExceptionHandler<ProblemExceptionHandler>();
        Protection.AddRequestTimeouts(builder);
        builder.Services.ConfigureHttpJsonOptions(o => o.SerializerOptions.PropertyNamingPolicy = System.Text.Json.JsonNamingPolicy.CamelCase);
        return builder;
    }

    /// <summary>
    /// The API's middleware and endpoints: ProblemDetails for every error, nosniff on every answer,
    /// request timeouts, then search, images, files, status.
    /// </summary>
    public static WebApplication MapImageSearchApi(this WebApplication app)
    {
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        app.Use((context, next) =>
        {
            // Answers are JSON, problems, images or the page's files: never to be sniffed into HTML.
            // Set as the headers go out, so it survives a handler (or the timeout) clearing the response.
            context.Response.OnStarting(() =>
            {
                context.Response.Headers.XContentTypeOptions = "nosniff";
                return Task.CompletedTask;
            });
            return next(context);
        });

        // Inside the exception handler, which would otherwise take the timeout's cancellation for a
        // client that went away; the timeout middleware answers it (503 with a problem) itself.
        app.UseRequestTimeouts();
        app.MapSearchApi();
        app.MapImagesApi();
        app.MapFilesApi();
        app.MapStatusApi();
        return app;
    }

    /// <summary>True when this gateway fans out to query services instead of hosting the pipeline.</summary>
    public static bool IsRemote(IConfiguration configuration) =>
        configuration.GetSection(GatewayOptions.Section).Get<GatewayOptions>()?.QueryServices is { Length: > 0 };
}

/// <summary>
/// Turns input errors that surface as exceptions (a broken image, an oversized body) into RFC 7807
/// responses with a useful message. Anything else stays a 500 without internals.
/// </summary>
internal sealed class ProblemExceptionHandler(IProblemDetailsService problems) : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
    {
        (int status, string title, string detail)? mapped = exception switch
        {
            InvalidImageException e => (StatusFor(e.Kind), TitleFor(e.Kind), e.Message),
            BadHttpRequestException { StatusCode: StatusCodes.Status413PayloadTooLarge } e => (413, "Request too large", e.Message),
            BadHttpRequestException e => (e.StatusCode, "Bad request", e.Message),
            InvalidDataException e => (400, "Malformed request", e.Message),
            BackendProblemException e => (e.Status, e.Title, e.Message),
            BackendUnavailableException e => (503, "Search backends unavailable", e.Message),
            _ => ((int, string, string)?)null,
        };
        if (mapped is not { } m)
        {
            return false;
        }

        httpContext.Response.StatusCode = m.status;
        return await problems.TryWriteAsync(new ProblemDetailsContext
        {
            HttpContext = httpContext,
            ProblemDetails = { Status = m.status, Title = m.title, Detail = m.detail },
            Exception = exception,
        }).ConfigureAwait(false);
    }

    internal static int StatusFor(ImageErrorKind kind) => kind switch
    {
        ImageErrorKind.UnsupportedFormat => StatusCodes.Status415UnsupportedMediaType,
        ImageErrorKind.TooLarge => StatusCodes.Status413PayloadTooLarge,
        _ => StatusCodes.Status400BadRequest,
    };

    private static string TitleFor(ImageErrorKind kind) => kind switch
    {
        ImageErrorKind.Empty => "Empty image",
        ImageErrorKind.UnsupportedFormat => "Unsupported image format",
        ImageErrorKind.TooLarge => "Image too large",
        ImageErrorKind.InvalidBox => "Invalid box",
        _ => "Corrupt image",
    };
}
