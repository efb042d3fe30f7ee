using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace ImageSearch.Api.Tests;

/// <summary>
/// The API's request timeout on a real Kestrel server on loopback, with the API's own middleware
/// (<see cref="ApiServices.MapImageSearchApi"/>): a request still running at Http:RequestTimeout is
/// cancelled and answered 503 with a problem body and Retry-After.
/// </summary>
public sealed class RequestTimeoutTests
{
    [Fact]
    public async Task A_request_over_its_time_is_cancelled_and_answered_503_with_a_problem()
    {
        var builder = WebApplication.CreateBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        builder.Configuration["Http:RequestTimeout"] = "00:00:00.5";
        builder.Services.AddProblemDetails();
        builder.AddImageSearchApi();
        await using var app = builder.Build();
        app.MapImageSearchApi();
        var cancelled = new TaskCompletionSource();

        // Never finishes on its own: only the timeout can end it.
        app.MapGet("/test/forever", async (CancellationToken ct) =>
        {
            await using var registration = ct.Register(() => cancelled.TrySetResult());
            await Task.Delay(Timeout.Infinite, ct);
        });
        await app.StartAsync();
        try
        {
            var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            using var client = new HttpClient { BaseAddress = new Uri(address), Timeout = TimeSpan.FromMinutes(1) };
            var response = await client.GetAsync("test/forever");

            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
            Assert.Equal("1", response.Headers.GetValues("Retry-After").Single());
            Assert.Equal("nosniff", response.Headers.GetValues("X-Content-Type-Options").Single());
            var problem = await response.Content.ReadFromJsonAsync<JsonElement>();
            Assert.Equal(503, problem.GetProperty("status").GetInt32());
            Assert.Equal("Request timed out", problem.GetProperty("title").GetString());
            Assert.Contains("0.5 s (Http:RequestTimeout)", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
            await cancelled.Task.WaitAsync(TimeSpan.FromMinutes(1)); // the handler saw its token cancelled
        }
        finally
        {
            await app.StopAsync();
        }
    }
}
