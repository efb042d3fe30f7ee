using System.Net;
using System.Text;
using ImageSearch.Api;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace ImageSearch.Pipeline.IntegrationTests;

/// <summary>The status page's queue figures: one management API request serves every caller for a while (pure logic, fake HTTP).</summary>
public sealed class QueueMonitorTests
{
    [Fact]
    public async Task Answers_are_reused_for_a_while_then_fetched_again()
    {
        var handler = new CountingHandler();
        var clock = new ManualClock();
        var monitor = new QueueMonitor(new Factory(handler), Options.Create(new QueueMonitorOptions { ManagementUrl = "http://guest:guest@127.0.0.1:1/" }),
            NullLogger<QueueMonitor>.Instance, clock);

        var first = await monitor.GetQueuesAsync(CancellationToken.None);
        var callers = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => monitor.GetQueuesAsync(CancellationToken.None)));
        Assert.Equal(1, handler.Requests);
        Assert.Equal("ingest", Assert.Single(first!).Name);
        Assert.All(callers, q => Assert.Same(first, q));
        Assert.Equal("Basic", handler.LastAuthorization);

        clock.Advance(QueueMonitor.CacheFor);
        var later = await monitor.GetQueuesAsync(CancellationToken.None);
        Assert.Equal(2, handler.Requests);
        Assert.NotSame(first, later);
    }

    [Fact]
    public async Task Without_a_management_url_there_are_no_figures_and_no_requests()
    {
        var handler = new CountingHandler();
        var monitor = new QueueMonitor(new Factory(handler), Options.Create(new QueueMonitorOptions()), NullLogger<QueueMonitor>.Instance);
        Assert.Null(await monitor.GetQueuesAsync(CancellationToken.None));
        Assert.Equal(0, handler.Requests);
    }

    private sealed class CountingHandler : HttpMessageHandler
    {
        private int requests;

        public int Requests => Volatile.Read(ref requests);

        public string? LastAuthorization { get; private set; }

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref requests);
            LastAuthorization = request.Headers.Authorization?.Scheme;
            await Task.Yield();
            return new HttpResponseMessage(HttpStatusCode.OK)
            {
                Content = new StringContent("""[{"name":"ingest","messages":3,"messages_unacknowledged":1,"consumers":2},{"name":"bus-x","messages":0}]""", Encoding.UTF8, "application/json"),
            };
        }
    }

    private sealed class Factory(HttpMessageHandler handler) : IHttpClientFactory
    {
        public HttpClient CreateClient(string name) => new(handler, disposeHandler: false);
    }

    private sealed class ManualClock : TimeProvider
    {
        private long now = 1_000_000;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => now;

        public void Advance(TimeSpan by) => now += by.Ticks;
    }
}
