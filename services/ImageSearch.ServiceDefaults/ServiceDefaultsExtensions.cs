using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration.Memory;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace ImageSearch.ServiceDefaults;

public static class ServiceDefaultsExtensions
{
    private const string LiveTag = "live";

    /// <summary>Logging, health checks and RFC 7807 ProblemDetails for every ImageSearch process.</summary>
    public static TBuilder AddServiceDefaults<TBuilder>(this TBuilder builder)
        where TBuilder : IHostApplicationBuilder
    {
        // Lines logged for every HTTP request served (start, endpoint, result, end) and every outgoing
        // call (health probes, status polls, the broker's management API) are noise at Information and
        // cost CPU on every request: those categories log warnings and errors only, unless the
        // configuration says otherwise (this source is inserted first, so any other source wins, e.g.
        // Logging__LogLevel__Microsoft.AspNetCore.Hosting.Diagnostics=Information). The server's
        // connection events (Kestrel: a stalled client cut off, a bad request) stay at Information.
        builder.Configuration.Sources.Insert(0, new MemoryConfigurationSource
        {
            InitialData = new Dictionary<string, string?>
            {
                ["Logging:LogLevel:Microsoft.AspNetCore.Hosting.Diagnostics"] = "Warning",
                ["Logging:LogLevel:Microsoft.AspNetCore.Routing"] = "Warning",
                ["Logging:LogLevel:Microsoft.AspNetCore.Http.Result"] = "Warning",
                ["Logging:LogLevel:System.Net.Http.HttpClient"] = "Warning",
            },
        });
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
            o.UseUtcTimestamp = true;
        });
        builder.Services.AddHealthChecks().AddCheck("self", () => HealthCheckResult.Healthy(), [LiveTag]);
        builder.Services.AddProblemDetails(o => o.CustomizeProblemDetails = c =>
            c.ProblemDetails.Extensions.TryAdd("traceId", c.HttpContext.TraceIdentifier));
        return builder;
    }

    /// <summary>
    /// <c>/healthz</c> (everything, ready) and <c>/healthz/live</c> (the process answers). Bodies are
    /// the health report as JSON so operators see which check failed.
    /// </summary>
    public static WebApplication MapDefaultEndpoints(this WebApplication app)
    {
        app.MapHealthChecks("/healthz", new HealthCheckOptions { ResponseWriter = WriteReport });
        app.MapHealthChecks("/healthz/live", new HealthCheckOptions { Predicate = r => r.Tags.Contains(LiveTag), ResponseWriter = WriteReport });
        return app;
    }

    private static Task WriteReport(HttpContext context, HealthReport report) =>
        context.Response.WriteAsJsonAsync(new
        {
            status = report.Status.ToString(),
            checks = report.Entries.ToDictionary(e => e.Key, e => new { status = e.Value.Status.ToString(), e.Value.Description }),
        });
}
