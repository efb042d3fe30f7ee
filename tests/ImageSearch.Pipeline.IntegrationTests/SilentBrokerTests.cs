using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;

namespace ImageSearch.Pipeline.IntegrationTests;

/// <summary>
/// A broker endpoint that accepts TCP connections and never sends a byte (a broker frozen, or a
/// proxy whose back end is gone): RabbitMQ.Client waits for it forever, the guarded socket gives it
/// up, and a process whose bus cannot connect says so, naming the broker. No broker is needed:
/// the silent endpoint is a listener in this test.
/// </summary>
public sealed class SilentBrokerTests : IDisposable
{
    private readonly SilentEndpoint endpoint = new();

    public void Dispose() => endpoint.Dispose();

    [Fact]
    public async Task RabbitMQ_client_alone_waits_for_a_silent_broker_past_its_own_handshake_timeout()
    {
        // Why the guard exists: if a RabbitMQ.Client upgrade makes this fail, the client bounds the
        // handshake itself and HandshakeGuardedTcpClient may be removed.
        var factory = new ConnectionFactory { Uri = endpoint.Url, HandshakeContinuationTimeout = TimeSpan.FromSeconds(1), AutomaticRecoveryEnabled = false };
        var connect = factory.CreateConnectionAsync();
        await endpoint.WaitForAsync(() => endpoint.Accepted == 1, "the client to connect");
        await Task.Delay(TimeSpan.FromSeconds(5));
        Assert.False(connect.IsCompleted, "RabbitMQ.Client gave up a silent broker by itself");
        Assert.Equal(1, endpoint.Open);
    }

    [Fact]
    public async Task With_the_guarded_socket_the_connect_to_a_silent_broker_fails_after_the_deadline_and_the_socket_is_closed()
    {
        var silent = 0;
        var factory = new ConnectionFactory { Uri = endpoint.Url, AutomaticRecoveryEnabled = false };
        factory.SocketFactory = family => new HandshakeGuardedTcpClient(family, TimeSpan.FromSeconds(1), (_, _) => Interlocked.Increment(ref silent), TimeProvider.System);

        // The bound only stops a broken run from hanging the suite.
        var error = await Assert.ThrowsAsync<BrokerUnreachableException>(() => factory.CreateConnectionAsync().WaitAsync(TimeSpan.FromMinutes(2)));
        Assert.Contains("connection.start was never received", error.InnerException?.Message, StringComparison.Ordinal);
        Assert.Equal(1, Volatile.Read(ref silent));
        await endpoint.WaitForAsync(() => endpoint.Open == 0, "the silent connection to be closed by the client");
    }

    [Fact]
    public async Task A_broker_that_has_spoken_is_not_cut_off_by_the_deadline()
    {
        var silent = 0;
        endpoint.Greeting = [1];
        using var client = new HandshakeGuardedTcpClient(AddressFamily.InterNetwork, TimeSpan.FromMilliseconds(300), (_, _) => Interlocked.Increment(ref silent), TimeProvider.System);
        await client.ConnectAsync(IPAddress.Loopback, endpoint.Port, CancellationToken.None);
        var buffer = new byte[16];
        Assert.Equal(1, await client.GetStream().ReadAsync(buffer));

        // Ten times the deadline later the connection is still open at both ends.
        await Task.Delay(TimeSpan.FromSeconds(3));
        Assert.Equal(0, Volatile.Read(ref silent));
        Assert.True(client.Connected);
        Assert.Equal(1, endpoint.Open);
    }

    [Fact]
    public async Task A_watcher_whose_bus_cannot_connect_keeps_retrying_and_reports_the_broker_by_name_as_unhealthy()
    {
        var library = Directory.CreateTempSubdirectory("silent-broker-").FullName;
        try
        {
            await using var host = await PipelineHost.StartAsync(PipelineRoles.Watcher, library, Path.Combine(library, "db"), qdrant: null, new Dictionary<string, string?>
            {
                ["Bus:Transport"] = "RabbitMq",
                ["Bus:RabbitMqUrl"] = endpoint.Url.ToString(),
                ["Bus:HandshakeTimeout"] = "00:00:01",
                ["Bus:StartTimeout"] = "00:00:02",
            });
            var health = host.Services.GetRequiredService<HealthCheckService>();
            HealthReport? report = null;
            await endpoint.WaitForAsync(() => endpoint.Accepted >= 2, "the first connection to be given up and the connect retried");
            await endpoint.WaitForAsync(async () =>
            {
                report = await health.CheckHealthAsync(c => c.Name == "bus");
                return report.Status == HealthStatus.Unhealthy;
            }, "the bus check to turn Unhealthy");
            Assert.Contains($"Not connected to RabbitMQ at 127.0.0.1:{endpoint.Port}", report!.Entries["bus"].Description, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(library, recursive: true);
        }
    }

    /// <summary>A loopback listener that accepts connections, reads and discards, and sends nothing but its greeting (none by default).</summary>
    private sealed class SilentEndpoint : IDisposable
    {
        private readonly TcpListener listener = new(IPAddress.Loopback, 0);
        private readonly CancellationTokenSource stop = new();
        private int accepted;
        private int open;

        public SilentEndpoint()
        {
            listener.Start();
            _ = AcceptLoopAsync();
        }

        public int Port => ((IPEndPoint)listener.LocalEndpoint).Port;

        public Uri Url => new($"amqp://guest:guest@127.0.0.1:{Port}/");

        public byte[] Greeting { get; set; } = [];

        public int Accepted => Volatile.Read(ref accepted);

        /// <summary>Accepted connections the client has not closed.</summary>
        public int Open => Volatile.Read(ref open);

        public Task WaitForAsync(Func<bool> condition, string what) => WaitForAsync(() => Task.FromResult(condition()), what);

        /// <summary>Polls <paramref name="condition"/>; the deadline only bounds a broken run.</summary>
        public async Task WaitForAsync(Func<Task<bool>> condition, string what)
        {
            var deadline = DateTime.UtcNow.AddMinutes(2);
            while (!await condition())
            {
                if (DateTime.UtcNow > deadline)
                {
                    throw new TimeoutException($"Gave up waiting for {what} (accepted {Accepted}, open {Open}).");
                }

                await Task.Delay(50);
            }
        }

        public void Dispose()
        {
            stop.Cancel();
            listener.Stop();
            stop.Dispose();
        }

        private async Task AcceptLoopAsync()
        {
            while (true)
            {
                Socket socket;
                try
                {
                    socket = await listener.AcceptSocketAsync(stop.Token);
                }
                catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
                {
                    return;
                }

                Interlocked.Increment(ref accepted);
                Interlocked.Increment(ref open);
                _ = HoldAsync(socket);
            }
        }

        private async Task HoldAsync(Socket socket)
        {
            using (socket)
            {
                try
                {
                    if (Greeting.Length > 0)
                    {
                        await socket.SendAsync(Greeting, stop.Token);
                    }

                    var buffer = new byte[4096];
                    while (await socket.ReceiveAsync(buffer, stop.Token) > 0)
                    {
                        // Discard what the client sends; never answer it.
                    }
                }
                catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
                {
                    // Reset by the client, or the test is over.
                }
                finally
                {
                    Interlocked.Decrement(ref open);
                }
            }
        }
    }
}
