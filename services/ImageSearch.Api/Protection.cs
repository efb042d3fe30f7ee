using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Net;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Http.Timeouts;
using Microsoft.AspNetCore.RateLimiting;

namespace ImageSearch.Api;

/// <summary>
/// Rate limits of the public API, per client address. Section "RateLimit". Searches and library
/// writes (uploads, deletes) each have a token bucket per client: <c>*PerSecond</c> /
/// <c>*PerMinute</c> tokens come back steadily up to a burst of <c>*Burst</c>; a request finding
/// the bucket empty gets 429 with Retry-After. Searches also share a concurrency limit across all
/// clients (they are CPU-bound: decode, model, local features), with a bounded queue; beyond it, 429.
/// </summary>
/// <remarks>
/// Clients are told apart by their address: behind a reverse proxy every client shares the proxy's,
/// so give the proxy its own limits (or raise these). Only the gateway, the public edge, limits: a
/// query service sees only gateways.
/// </remarks>
public sealed class RateLimitOptions
{
    public const string Section = "RateLimit";

    /// <summary>False turns every limit of this section off.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>Searches per second a client may sustain (POST /api/search, /batch, /by-id).</summary>
    [Range(1, 1_000_000)]
    public int SearchPerSecond { get; set; } = 20;

    /// <summary>Searches a client may send at once after a pause.</summary>
    [Range(1, 1_000_000)]
    public int SearchBurst { get; set; } = 60;

    /// <summary>Searches computed at once, all clients together; further ones wait in the queue.</summary>
    [Range(1, 4096)]
    public int SearchConcurrency { get; set; } = Math.Max(2, 2 * Environment.ProcessorCount);

    /// <summary>Searches waiting for a slot at most, all clients together; beyond, 429.</summary>
    [Range(0, 100_000)]
    public int SearchQueue { get; set; } = 256;

    /// <summary>Upload or delete requests per minute a client may sustain (POST and DELETE /api/images).</summary>
    [Range(1, 1_000_000)]
    public int WritesPerMinute { get; set; } = 120;

    /// <summary>Upload or delete requests a client may send at once after a pause.</summary>
    [Range(1, 1_000_000)]
    public int WriteBurst { get; set; } = 60;
}

/// <summary>
/// Protection of the HTTP API against clients that send too much or too slowly: request timeouts
/// (every process that serves the API) and rate limits (the gateway).
/// </summary>
public static class Protection
{
    /// <summary>Name of the request-timeout policy of uploads (<see cref="UploadOptions.RequestTimeout"/>).</summary>
    public const string UploadTimeoutPolicy = "upload";

    private const string SearchBucket = "search";
    private const string WriteBucket = "write";

    /// <summary>
    /// Request timeouts: every request must complete within <see cref="HttpOptions.RequestTimeout"/>
    /// (uploads: <see cref="UploadOptions.RequestTimeout"/>), or it is cancelled and answered 503
    /// with a problem (a client that stalls while sending its body holds nothing for longer).
    /// </summary>
    internal static void AddRequestTimeouts(WebApplicationBuilder builder)
    {
        var http = builder.Configuration.GetSection(HttpOptions.Section).Get<HttpOptions>() ?? new HttpOptions();
        var upload = builder.Configuration.GetSection(UploadOptions.Section).Get<UploadOptions>() ?? new UploadOptions();
        builder.Services.AddRequestTimeouts(o =>
        {
            o.DefaultPolicy = Policy(http.RequestTimeout, "Http:RequestTimeout");
            o.AddPolicy(UploadTimeoutPolicy, Policy(upload.RequestTimeout, "Upload:RequestTimeout"));
        });
    }

    /// <summary>
    /// The rate limits of <see cref="RateLimitOptions"/> (validated at start). Call on the public
    /// edge only, then <see cref="UseImageSearchRateLimits"/> before the API is mapped.
    /// </summary>
    public static WebApplicationBuilder AddImageSearchRateLimits(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<RateLimitOptions>().Bind(builder.Configuration.GetSection(RateLimitOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddRateLimiter(_ => { });
        builder.Services.AddOptions<RateLimiterOptions>().Configure<IOptions<RateLimitOptions>>((o, limits) =>
        {
            var l = limits.Value;
            o.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
            o.OnRejected = RejectAsync;
            if (!l.Enabled)
            {
                return;
            }

            var perClient = PartitionedRateLimiter.Create<HttpContext, (string Bucket, string Client)>(context =>
                Classify(context.Request) switch
                {
                    SearchBucket => RateLimitPartition.GetTokenBucketLimiter((SearchBucket, Client(context)), _ => new TokenBucketRateLimiterOptions
                    {
                        TokenLimit = l.SearchBurst,
                        TokensPerPeriod = l.SearchPerSecond,
                        ReplenishmentPeriod = TimeSpan.FromSeconds(1),
                        QueueLimit = 0,
                        AutoReplenishment = true,
                    }),
                    WriteBucket => RateLimitPartition.GetTokenBucketLimiter((WriteBucket, Client(context)), _ => new TokenBucketRateLimiterOptions
                    {
                        TokenLimit = l.WriteBurst,
                        TokensPerPeriod = l.WritesPerMinute,
                        ReplenishmentPeriod = TimeSpan.FromMinutes(1),
                        QueueLimit = 0,
                        AutoReplenishment = true,
                    }),
                    _ => RateLimitPartition.GetNoLimiter(("", "")),
                });
            var searchSlots = PartitionedRateLimiter.Create<HttpContext, string>(context =>
                Classify(context.Request) == SearchBucket
                    ? RateLimitPartition.GetConcurrencyLimiter(SearchBucket, _ => new ConcurrencyLimiterOptions
                    {
                        PermitLimit = l.SearchConcurrency,
                        QueueLimit = l.SearchQueue,
                        QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
                    })
                    : RateLimitPartition.GetNoLimiter(""));
            o.GlobalLimiter = PartitionedRateLimiter.CreateChained(perClient, searchSlots);
        });
        return builder;
    }

    /// <summary>The rate limiter middleware; call before <see cref="ApiServices.MapImageSearchApi"/>.</summary>
    public static WebApplication UseImageSearchRateLimits(this WebApplication app)
    {
        app.UseRateLimiter();
        return app;
    }

    /// <summary>Which bucket a request draws from: searches, library writes, or none (reads, the page, health).</summary>
    internal static string? Classify(HttpRequest request)
    {
        var path = request.Path;
        if (HttpMethods.IsPost(request.Method) && path.StartsWithSegments("/api/search", StringComparison.OrdinalIgnoreCase))
        {
            return SearchBucket;
        }

        return (HttpMethods.IsPost(request.Method) || HttpMethods.IsDelete(request.Method)) && path.StartsWithSegments("/api/images", StringComparison.OrdinalIgnoreCase)
            ? WriteBucket
            : null;
    }

    private static string Client(HttpContext context) => context.Connection.RemoteIpAddress?.ToString() ?? IPAddress.None.ToString();

    private static RequestTimeoutPolicy Policy(TimeSpan timeout, string setting) => new()
    {
        Timeout = timeout,
        TimeoutStatusCode = StatusCodes.Status503ServiceUnavailable,
        WriteTimeoutResponse = context => WriteProblemAsync(context, StatusCodes.Status503ServiceUnavailable, "Request timed out",
            string.Create(CultureInfo.InvariantCulture, $"The request did not complete within {timeout.TotalSeconds:0.###} s ({setting}): it was sent too slowly or the server is overloaded. Try again."),
            retryAfterSeconds: 1),
    };

    private static async ValueTask RejectAsync(OnRejectedContext rejected, CancellationToken ct)
    {
        var seconds = rejected.Lease.TryGetMetadata(MetadataName.RetryAfter, out var retryAfter)
            ? Math.Max(1, (int)Math.Ceiling(retryAfter.TotalSeconds))
            : 1;
        var what = Classify(rejected.HttpContext.Request) == WriteBucket ? "uploads and deletes" : "searches";
        await WriteProblemAsync(rejected.HttpContext, StatusCodes.Status429TooManyRequests, "Too many requests",
            string.Create(CultureInfo.InvariantCulture, $"This client sent more {what} than the server accepts (RateLimit settings), or too many searches are waiting. Retry after {seconds} s."),
            seconds).ConfigureAwait(false);
    }

    private static async Task WriteProblemAsync(HttpContext context, int status, string title, string detail, int retryAfterSeconds)
    {
        context.Response.StatusCode = status;
        context.Response.Headers.RetryAfter = retryAfterSeconds.ToString(CultureInfo.InvariantCulture);
        var problems = context.RequestServices.GetRequiredService<IProblemDetailsService>();
        await problems.WriteAsync(new ProblemDetailsContext
        {
            HttpContext = context,
            ProblemDetails = { Status = status, Title = title, Detail = detail },
        }).ConfigureAwait(false);
    }
}
