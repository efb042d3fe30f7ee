using System.Net.Http.Json;
using System.Text.Json.Nodes;
using ImageSearch.Core;
using ImageSearch.Qdrant.Tests;
using ImageSearch.VectorStore.Tests;
using Xunit.Abstractions;
using Xunit.Sdk;

[assembly: TestFramework("ImageSearch.Qdrant.Tests." + nameof(QdrantTestFramework), "ImageSearch.Qdrant.Tests")]

namespace ImageSearch.Qdrant.Tests;

/// <summary>The real Qdrant server to test against, from the environment: QDRANT_URL (and QDRANT_API_KEY).</summary>
internal static class LiveQdrant
{
    public const string UrlVariable = "QDRANT_URL";
    public const string ApiKeyVariable = "QDRANT_API_KEY";

    public static string? Url => Environment.GetEnvironmentVariable(UrlVariable) is { Length: > 0 } url ? url : null;

    public static string? ApiKey => Environment.GetEnvironmentVariable(ApiKeyVariable) is { Length: > 0 } key ? key : null;

    /// <summary>Why live tests are skipped, or null when QDRANT_URL is set.</summary>
    public static string? SkipReason => Url is null
        ? $"{UrlVariable} is not set, so there is no real Qdrant to test against (e.g. {UrlVariable}=http://localhost:6333; {ApiKeyVariable} if it needs a key)."
        : null;

    /// <summary>A collection name no other run uses.</summary>
    public static string NewCollectionName() => "imagesearch_test_" + Guid.NewGuid().ToString("N");

    public static QdrantOptions Options(string collection) => new() { Url = Url!, ApiKey = ApiKey, Collection = collection };

    /// <summary>A plain client for checks behind the store's back.</summary>
    public static HttpClient CreateClient()
    {
        var client = new HttpClient { BaseAddress = new Uri(Url!.TrimEnd('/') + "/"), Timeout = TimeSpan.FromSeconds(30) };
        if (ApiKey is { } key)
        {
            client.DefaultRequestHeaders.Add("api-key", key);
        }

        return client;
    }

    /// <summary>DELETE /collections/{name} (a test that failed early may not have created it); called from Dispose, hence synchronous.</summary>
    public static void DeleteCollection(string collection)
    {
        using var client = CreateClient();
        using var response = client.DeleteAsync(new Uri("collections/" + collection, UriKind.Relative)).GetAwaiter().GetResult();
        if (response.StatusCode != System.Net.HttpStatusCode.NotFound)
        {
            response.EnsureSuccessStatusCode();
        }
    }
}

/// <summary>A [Fact] that is skipped, with the reason, unless QDRANT_URL names a real Qdrant.</summary>
public sealed class QdrantFactAttribute : FactAttribute
{
    public QdrantFactAttribute()
    {
        if (LiveQdrant.SkipReason is { } reason)
        {
            Skip = reason;
        }
    }
}

/// <summary>
/// Marks a test class whose every test needs a real Qdrant, including tests it inherits with a plain
/// [Fact] (the shared contract suite): <see cref="QdrantTestFramework"/> reports them skipped, with the
/// reason, unless QDRANT_URL is set.
/// </summary>
[AttributeUsage(AttributeTargets.Class)]
public sealed class RequiresQdrantAttribute : Attribute;

/// <summary>
/// xUnit's own framework, except that tests of a class marked [RequiresQdrant] are discovered as
/// skipped while QDRANT_URL is unset. Needed because an inherited [Fact] cannot be given a Skip per
/// subclass, and the shared contract suite is compiled here unchanged.
/// </summary>
public sealed class QdrantTestFramework(IMessageSink messageSink) : XunitTestFramework(messageSink)
{
    protected override ITestFrameworkDiscoverer CreateDiscoverer(IAssemblyInfo assemblyInfo) =>
        new Discoverer(assemblyInfo, SourceInformationProvider, DiagnosticMessageSink);

    private sealed class Discoverer(IAssemblyInfo assemblyInfo, ISourceInformationProvider sourceProvider, IMessageSink diagnosticMessageSink)
        : XunitTestFrameworkDiscoverer(assemblyInfo, sourceProvider, diagnosticMessageSink)
    {
        protected override bool FindTestsForMethod(
            ITestMethod testMethod, bool includeSourceInformation, IMessageBus messageBus, ITestFrameworkDiscoveryOptions discoveryOptions)
        {
            if (LiveQdrant.SkipReason is not { } reason ||
                !testMethod.TestClass.Class.GetCustomAttributes(typeof(RequiresQdrantAttribute)).Any() ||
                !testMethod.Method.GetCustomAttributes(typeof(FactAttribute)).Any())
            {
                return base.FindTestsForMethod(testMethod, includeSourceInformation, messageBus, discoveryOptions);
            }

            var testCase = new SkippedTestCase(
                DiagnosticMessageSink, discoveryOptions.MethodDisplayOrDefault(), discoveryOptions.MethodDisplayOptionsOrDefault(), testMethod, reason);
            return ReportDiscoveredTestCase(testCase, includeSourceInformation, messageBus);
        }
    }
}

/// <summary>A test case reported as skipped with a given reason (serialisable, as xUnit requires).</summary>
public sealed class SkippedTestCase : XunitTestCase
{
    private string _skipReason = "";

    [Obsolete("Called by the de-serializer only.", error: true)]
    public SkippedTestCase()
    {
    }

    public SkippedTestCase(
        IMessageSink diagnosticMessageSink, TestMethodDisplay display, TestMethodDisplayOptions options, ITestMethod testMethod, string skipReason)
        : base(diagnosticMessageSink, display, options, testMethod)
    {
        _skipReason = skipReason;
    }

    public override void Serialize(IXunitSerializationInfo data)
    {
        ArgumentNullException.ThrowIfNull(data);
        data.AddValue(nameof(_skipReason), _skipReason);
        base.Serialize(data);
    }

    public override void Deserialize(IXunitSerializationInfo data)
    {
        ArgumentNullException.ThrowIfNull(data);
        _skipReason = data.GetValue<string>(nameof(_skipReason));
        base.Deserialize(data);
    }

    protected override string GetSkipReason(IAttributeInfo factAttribute) => _skipReason;
}

/// <summary>
/// The shared contract against a REAL Qdrant (QDRANT_URL); skipped otherwise. Each test gets its own
/// freshly named collection, deleted afterwards.
/// </summary>
[RequiresQdrant]
public sealed class LiveQdrantContractTests : VectorStoreContractTests
{
    private readonly string _collection = LiveQdrant.NewCollectionName();

    protected override IVectorStore OpenStore(int dimensions) =>
        new QdrantVectorStore(LiveQdrant.Options(_collection), new EmbeddingModelInfo("contract", "1", dimensions, 8, 8));

    protected override void Dispose(bool disposing) => LiveQdrant.DeleteCollection(_collection);
}

/// <summary>What the contract does not cover, against a REAL Qdrant (QDRANT_URL); skipped otherwise.</summary>
public sealed class LiveQdrantTests : IDisposable
{
    private readonly string _collection = LiveQdrant.NewCollectionName();

    public void Dispose() => LiveQdrant.DeleteCollection(_collection);

    [QdrantFact]
    public async Task Creates_the_collection_as_documented_and_refuses_another_model()
    {
        using (var store = new QdrantVectorStore(LiveQdrant.Options(_collection), new EmbeddingModelInfo("live", "1", 8, 8, 8)))
        {
            await store.CheckReadyAsync();
            Assert.Equal(0, await store.CountAsync());
        }

        using (var client = LiveQdrant.CreateClient())
        {
            var info = await client.GetFromJsonAsync<JsonObject>(new Uri("collections/" + _collection, UriKind.Relative));
            var vectors = info!["result"]!["config"]!["params"]!["vectors"]!;
            Assert.Equal(8, vectors["size"]!.GetValue<int>());
            Assert.Equal("Cosine", vectors["distance"]!.GetValue<string>());
            Assert.Equal("keyword", info["result"]!["payload_schema"]!["path"]!["data_type"]!.GetValue<string>());
        }

        using var other = new QdrantVectorStore(LiveQdrant.Options(_collection), new EmbeddingModelInfo("other", "2", 8, 8, 8));
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => other.EnsureCollectionAsync());
        Assert.Contains("live@1", error.Message, StringComparison.Ordinal);
    }

    [QdrantFact]
    public async Task Path_filters_restrict_a_search()
    {
        using var store = new QdrantVectorStore(LiveQdrant.Options(_collection), new EmbeddingModelInfo("live", "1", 16, 8, 8));
        await store.UpsertAsync(TestData.Records(0, 10, 16));

        var query = TestData.Vector(3, 16);
        var only = await store.SearchAsync(query, new VectorQuery(Top: 10), new QdrantPathFilter { AnyOf = [TestData.Payload(5).Path, TestData.Payload(6).Path] });
        Assert.Equal(new[] { TestData.Id(5), TestData.Id(6) }.Select(id => id.Value).Order(), only.Select(h => h.Id.Value).Order());

        var without = await store.SearchAsync(query, new VectorQuery(Top: 10), new QdrantPathFilter { NoneOf = [TestData.Payload(3).Path] });
        Assert.Equal(9, without.Count);
        Assert.DoesNotContain(without, h => h.Id == TestData.Id(3));
    }
}
