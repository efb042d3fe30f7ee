using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace ImageSearch.IntegrationTests;

/// <summary>
/// Rate limits and request timeouts on the real gateway, with limits small enough to reach: a
/// client over its searches or uploads gets 429 with Retry-After, a client that stalls while
/// sending gets 503 once its time is up, and bad settings stop the gateway at start.
/// </summary>
public sealed class ProtectionTests : IAsyncLifetime
{
    private readonly string root = Directory.CreateTempSubdirectory("protection-").FullName;
    private GatewayProcess gateway = null!;

    public async Task InitializeAsync()
    {
        var library = Directory.CreateDirectory(Path.Combine(root, "library")).FullName;
        gateway = await GatewayProcess.StartAsync(library, Path.Combine(root, "db"),
            "--RateLimit:SearchPerSecond=1", "--RateLimit:SearchBurst=2", "--RateLimit:WritesPerMinute=1", "--RateLimit:WriteBurst=1",
            "--Http:RequestTimeout=00:00:02").ConfigureAwait(false);
    }

    public async Task DisposeAsync()
    {
        await gateway.DisposeAsync().ConfigureAwait(false);
        Directory.Delete(root, recursive: true);
    }

    [Fact]
    public async Task A_client_over_its_search_rate_gets_429_with_retry_after_and_reads_stay_open()
    {
        // Ten at once against a bucket of two that refills one a second: the limiter answers before
        // any body is read, so most are refused however slow the machine is.
        var responses = await Task.WhenAll(Enumerable.Range(0, 10).Select(_ =>
            gateway.Client.PostAsync("api/search", new MultipartFormDataContent { { new StringContent("5"), "top" } })));
        var limited = responses.Where(r => r.StatusCode == HttpStatusCode.TooManyRequests).ToList();
        Assert.True(limited.Count >= 5, string.Join(", ", responses.Select(r => (int)r.StatusCode)));
        Assert.All(responses.Except(limited), r => Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode)); // admitted: no image in the form
        await UploadTests.AssertProblemAsync(limited[0], HttpStatusCode.TooManyRequests, "Retry after");
        Assert.InRange(int.Parse(limited[0].Headers.GetValues("Retry-After").Single(), CultureInfo.InvariantCulture), 1, 60);

        // Reads are not limited.
        for (var i = 0; i < 10; i++)
        {
            Assert.Equal(HttpStatusCode.OK, (await gateway.Client.GetAsync("api/status")).StatusCode);
        }
    }

    [Fact]
    public async Task A_client_over_its_upload_rate_gets_429_and_deletes_count_as_writes()
    {
        // Its own client address (another loopback address): limits are per client.
        using var client = ClientFrom("127.0.0.2");
        var photo = await File.ReadAllBytesAsync(Path.Combine(TestPaths.Photos, "nature-tree.jpg"));
        var first = await client.PostAsync("api/images", UploadTests.Form(("tree.jpg", photo)));
        Assert.Equal(HttpStatusCode.Accepted, first.StatusCode);

        var second = await client.PostAsync("api/images", UploadTests.Form(("tree2.jpg", photo)));
        await UploadTests.AssertProblemAsync(second, HttpStatusCode.TooManyRequests, "uploads and deletes");
        Assert.True(int.Parse(second.Headers.GetValues("Retry-After").Single(), CultureInfo.InvariantCulture) >= 1);
        await UploadTests.AssertProblemAsync(await client.DeleteAsync($"api/images/{new string('0', 32)}"), HttpStatusCode.TooManyRequests, "uploads and deletes");
        Assert.False(File.Exists(Path.Combine(gateway.Library, "uploads", "tree2.jpg")));

        // Another client is not held back by this one.
        using var other = ClientFrom("127.0.0.4");
        Assert.Equal(HttpStatusCode.Accepted, (await other.PostAsync("api/images", UploadTests.Form(("tree3.jpg", photo)))).StatusCode);
    }

    [Fact]
    public async Task A_client_that_stalls_while_sending_its_body_is_cut_off_when_its_time_is_up()
    {
        // Headers promise 100 KB, a few bytes follow, then nothing: the request can only end by the
        // server's timeout (2 s here). Kestrel cannot answer a request whose body it is still
        // reading, so the connection is closed (reset) rather than answered; what matters is that
        // the stalled client holds nothing for longer. (A request that is slow after its body was
        // read gets a 503 problem: RequestTimeoutTests in ImageSearch.Api.Tests.)
        using var client = new TcpClient(new IPEndPoint(IPAddress.Parse("127.0.0.3"), 0)); // its own rate-limit partition
        await client.ConnectAsync(IPAddress.Loopback, gateway.Address.Port);
        var stream = client.GetStream();
        const string boundary = "stall";
        var head = $"POST /api/search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 100000\r\n\r\n" +
                   $"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"q.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head));
        await stream.WriteAsync(new byte[] { 0xFF, 0xD8, 0xFF });
        await stream.FlushAsync();

        var received = new StringBuilder();
        var buffer = new byte[16 * 1024];
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(90)); // bounds a broken run only
        try
        {
            int read;
            while ((read = await stream.ReadAsync(buffer, deadline.Token)) > 0)
            {
                received.Append(Encoding.ASCII.GetString(buffer, 0, read));
            }
        }
        catch (IOException)
        {
            // Reset by the server: the expected end.
        }

        Assert.False(deadline.IsCancellationRequested, "the server never closed the stalled connection");
        Assert.True(received.Length == 0 || received.ToString().StartsWith("HTTP/1.1 503", StringComparison.Ordinal), received.ToString());
        // The server's own account of it (its log reaches the test a moment after the reset).
        await gateway.WaitUntilAsync(() => Task.FromResult(gateway.Log.Contains("the application aborted the connection", StringComparison.Ordinal)),
            "the gateway to log that it cut the stalled request off");
        Assert.Equal(HttpStatusCode.OK, (await gateway.Client.GetAsync("healthz")).StatusCode);
    }

    [Fact]
    public async Task Without_an_api_key_deletes_are_refused_and_the_start_says_so()
    {
        await UploadTests.AssertProblemAsync(await gateway.Client.DeleteAsync($"api/images/{new string('a', 32)}"), HttpStatusCode.Forbidden, "Http:ApiKey");
        await gateway.WaitUntilAsync(() => Task.FromResult(gateway.Log.Contains("Uploads are enabled without an API key", StringComparison.Ordinal) &&
            gateway.Log.Contains("DELETE /api/images/{id} is refused until a key is set", StringComparison.Ordinal)), "the start-up warning about the missing key");
    }

    /// <summary>An HTTP client whose connections come from <paramref name="localAddress"/> (any 127.x.y.z reaches the gateway).</summary>
    private HttpClient ClientFrom(string localAddress) => new(new SocketsHttpHandler
    {
        ConnectCallback = async (context, ct) =>
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                socket.Bind(new IPEndPoint(IPAddress.Parse(localAddress), 0));
                await socket.ConnectAsync(context.DnsEndPoint, ct).ConfigureAwait(false);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        },
    })
    { BaseAddress = gateway.Address, Timeout = TimeSpan.FromMinutes(2) };

    [Theory]
    [InlineData("--RateLimit:SearchPerSecond=0", "SearchPerSecond")]
    [InlineData("--RateLimit:SearchQueue=-1", "SearchQueue")]
    [InlineData("--Http:RequestTimeout=00:00:00", "RequestTimeout")]
    [InlineData("--Upload:RequestTimeout=05:00:00", "RequestTimeout")]
    public async Task Invalid_protection_settings_stop_the_gateway_at_start(string setting, string named)
    {
        var (code, stdout, stderr) = await TestPaths.RunAsync(TestPaths.Gateway, "--urls", $"http://127.0.0.1:{TestPaths.FreePort()}",
            $"--Library:Root={Path.Combine(root, "other-library")}", $"--Index:Directory={Path.Combine(root, "other-db")}", $"--Embedding:ModelsDirectory={TestPaths.Models}", setting);
        Assert.NotEqual(0, code);
        Assert.Contains(named, stdout + stderr, StringComparison.Ordinal);
    }
}
