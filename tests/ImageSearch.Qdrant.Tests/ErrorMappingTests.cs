using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using ImageSearch.Core;
using ImageSearch.VectorStore.Tests;

namespace ImageSearch.Qdrant.Tests;

/// <summary>
/// How failures reach callers: Qdrant's error bodies become exception messages; what is worth retrying
/// (connection failures, timeouts, 429, 5xx) is a <see cref="QdrantUnavailableException"/>, the rest a
/// plain <see cref="QdrantException"/>. Error bodies are Qdrant's documented ErrorResponse shape with
/// texts as Qdrant writes them.
/// </summary>
public sealed class ErrorMappingTests : IDisposable
{
    private readonly QdrantApiDouble _qdrant = new();

    public void Dispose()
    {
        _qdrant.AssertCompliant();
        _qdrant.Dispose();
    }

    [Fact]
    public async Task A_collection_deleted_behind_the_stores_back_is_a_404_with_qdrants_message()
    {
        using var store = Doubles.Open(_qdrant);
        await store.EnsureCollectionAsync();
        _qdrant.RemoveCollection(Doubles.Collection);

        // With local features, so the upsert is a single PUT (nothing to carry over).
        var error = await Assert.ThrowsAsync<QdrantException>(() => store.UpsertAsync([TestData.Record(0, Doubles.Dimensions) with { LocalFeatures = [1, 2, 3] }]));

        Assert.IsNotType<QdrantUnavailableException>(error);
        Assert.Equal(HttpStatusCode.NotFound, error.StatusCode);
        Assert.Equal($"Not found: Collection `{Doubles.Collection}` doesn't exist!", error.ServerError);
        Assert.Contains(error.ServerError!, error.Message, StringComparison.Ordinal);
        Assert.Contains($"PUT /collections/{Doubles.Collection}/points?wait=true", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_dimension_mismatch_found_by_qdrant_is_a_400_with_its_message()
    {
        // The collection is recreated with another size after the store checked it.
        using var store = Doubles.Open(_qdrant);
        await store.EnsureCollectionAsync();
        _qdrant.RemoveCollection(Doubles.Collection);
        _qdrant.AddCollection(Doubles.Collection, 8);

        var error = await Assert.ThrowsAsync<QdrantException>(() => store.UpsertAsync(TestData.Records(0, 1, Doubles.Dimensions)));

        Assert.Equal(HttpStatusCode.BadRequest, error.StatusCode);
        Assert.Equal("Wrong input: Vector dimension error: expected dim: 8, got 16", error.ServerError);
    }

    [Theory]
    [InlineData(HttpStatusCode.BadRequest, false)]
    [InlineData(HttpStatusCode.Forbidden, false)]
    [InlineData(HttpStatusCode.NotFound, false)]
    [InlineData(HttpStatusCode.TooManyRequests, true)]
    [InlineData(HttpStatusCode.InternalServerError, true)]
    [InlineData(HttpStatusCode.BadGateway, true)]
    [InlineData(HttpStatusCode.ServiceUnavailable, true)]
    [InlineData(HttpStatusCode.GatewayTimeout, true)]
    public async Task Error_bodies_become_exceptions_and_only_429_and_5xx_are_transient(HttpStatusCode status, bool transient)
    {
        _qdrant.Intercept = (_, _) => Task.FromResult<HttpResponseMessage?>(
            QdrantApiDouble.ErrorResponse(status, "Service internal error: 1 of 1 read operations failed"));
        using var store = Doubles.Open(_qdrant);

        var error = await Assert.ThrowsAnyAsync<QdrantException>(() => store.CountAsync());

        Assert.Equal(transient, error is QdrantUnavailableException);
        Assert.Equal(status, error.StatusCode);
        Assert.Equal("Service internal error: 1 of 1 read operations failed", error.ServerError);
        Assert.Contains($"{(int)status} {status}: Service internal error", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_non_json_error_page_is_quoted()
    {
        _qdrant.Intercept = (_, _) => Task.FromResult<HttpResponseMessage?>(new HttpResponseMessage(HttpStatusCode.BadGateway)
        {
            Content = new StringContent("<html><body><h1>502 Bad Gateway</h1></body></html>", Encoding.UTF8, "text/html"),
        });
        using var store = Doubles.Open(_qdrant);

        var error = await Assert.ThrowsAsync<QdrantUnavailableException>(() => store.CountAsync());

        Assert.Null(error.ServerError);
        Assert.Contains("<h1>502 Bad Gateway</h1>", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_missing_api_key_is_not_transient()
    {
        using var qdrant = new QdrantApiDouble(apiKey: "s3cret");
        using var store = Doubles.Open(qdrant);

        var error = await Assert.ThrowsAsync<QdrantException>(() => store.CountAsync());

        Assert.Equal(HttpStatusCode.Unauthorized, error.StatusCode);
        Assert.Contains("API key", error.ServerError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_answer_that_is_not_the_documented_json_is_reported()
    {
        _qdrant.Intercept = (_, _) => Task.FromResult<HttpResponseMessage?>(new HttpResponseMessage(HttpStatusCode.OK)
        {
            Content = new StringContent("""{"result":"green","status":"ok","time":0.0001}""", Encoding.UTF8, "application/json"),
        });
        using var store = Doubles.Open(_qdrant);

        var error = await Assert.ThrowsAsync<QdrantException>(() => store.CountAsync());

        Assert.Contains("not the documented JSON", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_point_with_an_integer_id_is_reported_as_foreign()
    {
        using var store = Doubles.Open(_qdrant);
        await store.EnsureCollectionAsync();
        _qdrant.AddPoint(Doubles.Collection, JsonValue.Create(42)!, TestData.Vector(0, Doubles.Dimensions), []);

        var error = await Assert.ThrowsAsync<QdrantException>(() => store.SearchAsync(TestData.Vector(0, Doubles.Dimensions), new VectorQuery()));

        Assert.Contains("point id 42, which is not a UUID", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_request_over_the_timeout_is_transient_with_a_TimeoutException_inside()
    {
        _qdrant.Intercept = async (_, cancellationToken) =>
        {
            await Task.Delay(Timeout.Infinite, cancellationToken);
            return null;
        };
        using var store = Doubles.Open(_qdrant, o => o.Timeout = TimeSpan.FromMilliseconds(200));
        var clock = Stopwatch.StartNew();

        var error = await Assert.ThrowsAsync<QdrantUnavailableException>(() => store.CountAsync());

        Assert.IsType<TimeoutException>(error.InnerException);
        Assert.Null(error.StatusCode);
        Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(150), TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task Cancellation_by_the_caller_is_not_turned_into_a_failure()
    {
        _qdrant.Intercept = async (_, cancellationToken) =>
        {
            await Task.Delay(Timeout.Infinite, cancellationToken);
            return null;
        };
        using var store = Doubles.Open(_qdrant);
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));

        var error = await Assert.ThrowsAnyAsync<OperationCanceledException>(() => store.CountAsync(cancel.Token));

        Assert.Equal(cancel.Token, error.CancellationToken);
    }

    [Fact]
    public async Task A_refused_connection_is_transient()
    {
        // A real socket: a loopback port that was just free, so nothing listens there.
        using var store = new QdrantVectorStore(new QdrantOptions { Url = $"http://127.0.0.1:{FreePort()}" }, Doubles.Model);

        var error = await Assert.ThrowsAsync<QdrantUnavailableException>(() => store.CountAsync());

        Assert.IsType<HttpRequestException>(error.InnerException);
        Assert.Contains("Could not reach Qdrant at http://127.0.0.1:", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_server_that_accepts_but_never_answers_times_out()
    {
        // A real socket: a loopback listener that accepts the connection and stays silent.
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var accepted = listener.AcceptTcpClientAsync();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        using var store = new QdrantVectorStore(
            new QdrantOptions { Url = $"http://127.0.0.1:{port}", Timeout = TimeSpan.FromMilliseconds(300) }, Doubles.Model);

        var error = await Assert.ThrowsAsync<QdrantUnavailableException>(() => store.CountAsync());

        Assert.IsType<TimeoutException>(error.InnerException);
        using var connection = await accepted;
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
