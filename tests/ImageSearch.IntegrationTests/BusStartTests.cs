using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;

namespace ImageSearch.IntegrationTests;

/// <summary>
/// The watcher starts against a broker endpoint that accepts TCP connections and never speaks
/// AMQP, then a real broker appears behind that endpoint. Before the fix the first connect waited
/// for the broker's first frame forever: no error, no retry, no scan, nothing ingested, and the
/// connection held open by the silent endpoint was never given up. Now the silent connection is
/// closed after Bus:HandshakeTimeout and retried, the process reports the broker by name as
/// unhealthy after Bus:StartTimeout, and once the broker answers the watcher scans and the
/// photos are indexed with nobody restarting anything. A real RabbitMQ broker, query service
/// and ingest worker, each its own process on loopback, with the settings of deploy/cluster.env.
/// </summary>
[Collection(nameof(ClusterCollection))]
public sealed class BusStartTests : IAsyncLifetime
{
    private const int Photos = 4;
    private readonly string root = Directory.CreateTempSubdirectory("bus-start-").FullName;
    private readonly List<ServiceProcess> services = [];
    private readonly string brokerName = "bus-start-" + Guid.NewGuid().ToString("N")[..8];
    private string library = "";
    private string broker = "";
    private StallingProxy proxy = null!;

    public async Task InitializeAsync()
    {
        library = Directory.CreateDirectory(Path.Combine(root, "library")).FullName;
        foreach (var f in Directory.GetFiles(TestPaths.Photos, "*.jpg").Order(StringComparer.Ordinal).Take(Photos))
        {
            File.Copy(f, Path.Combine(library, Path.GetFileName(f)));
        }

        var (code, stdout, stderr) = await RabbitMqAsync("start", "--port", "0").ConfigureAwait(false);
        Assert.True(code == 0, $"the broker did not start:\n{stderr}");
        broker = stdout.Split('\n')[0].Trim();
        proxy = StallingProxy.Start(new Uri(broker).Port);
    }

    public async Task DisposeAsync()
    {
        foreach (var s in services)
        {
            await s.DisposeAsync().ConfigureAwait(false);
        }

        proxy?.Dispose();
        await RabbitMqAsync("stop").ConfigureAwait(false);
        Directory.Delete(root, recursive: true);
    }

    [Fact]
    public async Task A_broker_that_accepts_and_never_answers_is_reported_by_name_given_up_and_retried_until_a_real_one_answers()
    {
        var query = await StartAsync("Query", broker, $"--Index:Directory={Path.Combine(root, "db")}");
        await StartAsync("Ingest", broker);
        var silent = $"amqp://guest:guest@127.0.0.1:{proxy.Port}/";
        var watcher = await StartAsync("Watcher", silent, "--Bus:HandshakeTimeout=00:00:03", "--Bus:StartTimeout=00:00:05");

        // While the endpoint stays silent: the first connection is given up and the connect retried,
        // the process says which broker it cannot reach, in its log and in /healthz.
        var name = $"127.0.0.1:{proxy.Port}";
        await watcher.WaitUntilAsync(() => Task.FromResult(proxy.Accepted >= 2 && proxy.ClosedByClient >= 1), "a silent connection to be given up and another attempted");
        await watcher.WaitUntilAsync(() => Task.FromResult(watcher.Log.Contains($"has not been connected to RabbitMQ at {name}", StringComparison.Ordinal)), "an error naming the broker");
        var health = await watcher.Client.GetAsync("healthz");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, health.StatusCode);
        var bus = (await health.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("checks").GetProperty("bus");
        Assert.Equal("Unhealthy", bus.GetProperty("status").GetString());
        Assert.Contains(name, bus.GetProperty("description").GetString(), StringComparison.Ordinal);
        Assert.DoesNotContain("Scanned library", watcher.Log, StringComparison.Ordinal);

        // The broker appears behind the endpoint: connections from now on reach it. Nobody restarts
        // anything; the watcher connects, scans, and every photo is indexed.
        proxy.Forward();
        await watcher.WaitUntilAsync(async () => (await query.Client.GetFromJsonAsync<JsonElement>("api/status")).GetProperty("indexed").GetInt64() == Photos,
            $"the {Photos} photos to be indexed");
        Assert.Contains("Scanned library", watcher.Log, StringComparison.Ordinal);
        await watcher.WaitUntilAsync(async () => (await watcher.Client.GetAsync("healthz")).IsSuccessStatusCode, "the watcher to report itself healthy");

        // No connection is left waiting on the silent endpoint.
        await watcher.WaitUntilAsync(() => Task.FromResult(proxy.Stalled == 0), "every stalled connection to be closed by the watcher");
    }

    private async Task<ServiceProcess> StartAsync(string name, string amqp, params string[] settings)
    {
        var s = await ServiceProcess.StartAsync(name, amqp, library, settings).ConfigureAwait(false);
        services.Add(s);
        return s;
    }

    private Task<(int Code, string Stdout, string Stderr)> RabbitMqAsync(string command, params string[] args) =>
        TestPaths.RunProcessAsync("bash", [Path.Combine(TestPaths.Repo, "scripts", "rabbitmq.sh"), command, "--dir", Path.Combine(root, "rabbitmq"), "--name", brokerName, .. args]);

    /// <summary>
    /// A TCP endpoint in front of the real broker. At first it accepts connections and never sends
    /// a byte (it reads and discards what the client sends), as a broker that is frozen, or a proxy
    /// whose back end is gone, would. After <see cref="Forward"/> it passes new connections on to
    /// the broker; the ones it already holds stay silent until the client gives them up.
    /// </summary>
    private sealed class StallingProxy : IDisposable
    {
        private readonly TcpListener listener = new(IPAddress.Loopback, 0);
        private readonly int brokerPort;
        private readonly CancellationTokenSource stop = new();
        private volatile bool forward;
        private int accepted;
        private int stalled;
        private int closedByClient;

        private StallingProxy(int brokerPort) => this.brokerPort = brokerPort;

        public int Port => ((IPEndPoint)listener.LocalEndpoint).Port;

        /// <summary>Connections accepted while stalling.</summary>
        public int Accepted => Volatile.Read(ref accepted);

        /// <summary>Stalled connections still open.</summary>
        public int Stalled => Volatile.Read(ref stalled);

        /// <summary>Stalled connections that the client closed.</summary>
        public int ClosedByClient => Volatile.Read(ref closedByClient);

        public static StallingProxy Start(int brokerPort)
        {
            var p = new StallingProxy(brokerPort);
            p.listener.Start();
            _ = p.AcceptLoopAsync();
            return p;
        }

        public void Forward() => forward = true;

        public void Dispose()
        {
            stop.Cancel();
            listener.Stop();
            stop.Dispose();
        }

        private async Task AcceptLoopAsync()
        {
            while (!stop.IsCancellationRequested)
            {
                Socket client;
                try
                {
                    client = await listener.AcceptSocketAsync(stop.Token).ConfigureAwait(false);
                }
                catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
                {
                    return;
                }

                _ = forward ? ForwardAsync(client) : StallAsync(client);
            }
        }

        private async Task StallAsync(Socket client)
        {
            Interlocked.Increment(ref accepted);
            Interlocked.Increment(ref stalled);
            using (client)
            {
                var buffer = new byte[4096];
                try
                {
                    while (await client.ReceiveAsync(buffer, stop.Token).ConfigureAwait(false) > 0)
                    {
                        // Discard the protocol header: never answer it.
                    }

                    Interlocked.Increment(ref closedByClient);
                }
                catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
                {
                    if (e is SocketException)
                    {
                        Interlocked.Increment(ref closedByClient);
                    }
                }
                finally
                {
                    Interlocked.Decrement(ref stalled);
                }
            }
        }

        private async Task ForwardAsync(Socket client)
        {
            using (client)
            using (var upstream = new Socket(SocketType.Stream, ProtocolType.Tcp))
            {
                try
                {
                    await upstream.ConnectAsync(IPAddress.Loopback, brokerPort, stop.Token).ConfigureAwait(false);
                    await Task.WhenAny(PumpAsync(client, upstream), PumpAsync(upstream, client)).ConfigureAwait(false);
                }
                catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
                {
                    // The test is over, or one side went away: close both.
                }
            }
        }

        private async Task PumpAsync(Socket from, Socket to)
        {
            var buffer = new byte[64 * 1024];
            try
            {
                int n;
                while ((n = await from.ReceiveAsync(buffer, stop.Token).ConfigureAwait(false)) > 0)
                {
                    await to.SendAsync(buffer.AsMemory(0, n), stop.Token).ConfigureAwait(false);
                }
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                // Either side closed.
            }
        }
    }

    /// <summary>One distributed service (query, ingest or watcher) as its own process on a loopback port.</summary>
    private sealed class ServiceProcess : TestProcess
    {
        private ServiceProcess(string name, Process process, Uri address)
            : base(process, address, $"{name} service", clientTimeout: TimeSpan.FromMinutes(1), waitLimit: TimeSpan.FromMinutes(4), poll: TimeSpan.FromMilliseconds(200), timeoutLogLines: 40)
        {
            Name = name;
        }

        public string Name { get; }

        /// <summary>Starts the service with deploy/cluster.env's settings and returns once it answers /healthz/live.</summary>
        public static async Task<ServiceProcess> StartAsync(string name, string amqp, string library, IEnumerable<string> settings)
        {
            var port = TestPaths.FreePort();
            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = TestPaths.Repo };
            foreach (var line in File.ReadLines(Path.Combine(TestPaths.Repo, "deploy", "cluster.env")))
            {
                if (line.Length > 0 && !line.StartsWith('#') && line.Split('=', 2) is [var key, var value])
                {
                    psi.Environment[key] = value;
                }
            }

            psi.Environment["Bus__RabbitMqUrl"] = amqp;
            psi.Environment["Library__Root"] = library;
            psi.Environment["Embedding__ModelsDirectory"] = TestPaths.Models;
            foreach (var a in new[] { TestPaths.Service(name), "--urls", $"http://127.0.0.1:{port}" }.Concat(settings))
            {
                psi.ArgumentList.Add(a);
            }

            var s = new ServiceProcess(name, Process.Start(psi)!, new Uri($"http://127.0.0.1:{port}/"));
            await s.WaitUntilAsync(async () => (await s.Client.GetAsync("healthz/live").ConfigureAwait(false)).IsSuccessStatusCode, $"the {name} service to answer /healthz/live").ConfigureAwait(false);
            return s;
        }
    }
}
