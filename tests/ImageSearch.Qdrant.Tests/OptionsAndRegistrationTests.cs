using ImageSearch.Core;
using ImageSearch.VectorStore.Tests;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace ImageSearch.Qdrant.Tests;

public sealed class OptionsAndRegistrationTests
{
    [Fact]
    public void The_defaults_are_valid()
    {
        Assert.Empty(new QdrantOptions().Validate());
    }

    [Fact]
    public void Invalid_settings_are_all_reported()
    {
        var options = new QdrantOptions
        {
            Url = "localhost:6333",
            Collection = "a/b",
            M = 1,
            EfConstruct = 3,
            EfSearch = 0,
            Timeout = TimeSpan.Zero,
            UpsertBatchSize = 0,
        };

        var errors = options.Validate();

        Assert.Equal(7, errors.Count);
        Assert.Throws<OptionsValidationException>(() => new QdrantVectorStore(options, Doubles.Model));
        Assert.Single(new QdrantOptions { Url = "ftp://host" }.Validate());
        Assert.Single(new QdrantOptions { Url = "http://host:6333/?x=1" }.Validate());
    }

    [Fact]
    public void The_default_collection_is_named_after_the_model_key()
    {
        var model = new EmbeddingModelInfo("inception-v3-mixed7", "1+cal.0a1b", 768, 299, 299);

        Assert.Equal("imagesearch_inception-v3-mixed7_1_cal_0a1b", QdrantOptions.DefaultCollectionName(model));
        Assert.Equal("imagesearch_inception-v3-mixed7_1_cal_0a1b", new QdrantOptions().ResolveCollection(model));
        Assert.Equal("mine", new QdrantOptions { Collection = "mine" }.ResolveCollection(model));
    }

    [Fact]
    public async Task Registration_binds_the_section_and_sends_nothing_until_used()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Qdrant:Url"] = "http://qdrant.invalid:6333",
            ["Qdrant:Collection"] = "photos",
            ["Qdrant:ApiKey"] = "k",
            ["Qdrant:EfSearch"] = "128",
            ["Qdrant:Timeout"] = "00:00:05",
            ["Qdrant:UpsertBatchSize"] = "64",
        }).Build();
        var services = new ServiceCollection()
            .AddSingleton(Doubles.Model)
            .AddQdrantVectorStore(configuration.GetSection("Qdrant"));
        await using var provider = services.BuildServiceProvider();

        var store = Assert.IsType<QdrantVectorStore>(provider.GetRequiredService<IVectorStore>());
        Assert.Same(provider.GetRequiredService<QdrantVectorStore>(), store);
        Assert.Equal(("photos", Doubles.Dimensions, "test@1"), (store.Collection, store.Dimensions, store.ModelKey));
        Assert.Equal(new Uri("http://qdrant.invalid:6333/"), store.Endpoint);
        var options = provider.GetRequiredService<IOptions<QdrantOptions>>().Value;
        Assert.Equal((128, TimeSpan.FromSeconds(5), 64, "k"), (options.EfSearch, options.Timeout, options.UpsertBatchSize, options.ApiKey));
        Assert.Contains(services, d => d.ServiceType == typeof(IHostedService) && d.ImplementationType == typeof(QdrantCollectionInitializer));
        Assert.Contains(provider.GetRequiredService<IOptions<HealthCheckServiceOptions>>().Value.Registrations, r => r.Name == "qdrant" && r.Tags.Contains("ready"));
    }

    [Fact]
    public void The_model_comes_from_the_registered_embedder()
    {
        var services = new ServiceCollection()
            .AddSingleton<IEmbedder>(new StubEmbedder(new EmbeddingModelInfo("mobilenet", "2", 1792, 224, 224)))
            .AddQdrantVectorStore(new ConfigurationBuilder().Build());
        using var provider = services.BuildServiceProvider();

        var store = provider.GetRequiredService<QdrantVectorStore>();

        Assert.Equal(("imagesearch_mobilenet_2", 1792), (store.Collection, store.Dimensions));
    }

    [Fact]
    public void Invalid_configuration_fails_validation()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["Url"] = "nowhere" }).Build();
        using var provider = new ServiceCollection().AddSingleton(Doubles.Model).AddQdrantVectorStore(configuration).BuildServiceProvider();

        var error = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IOptions<QdrantOptions>>().Value);

        Assert.Contains("Url", Assert.Single(error.Failures), StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_start_up_check_stops_the_host_for_another_model_only()
    {
        using var qdrant = new QdrantApiDouble();
        qdrant.AddCollection(Doubles.Collection, 8);
        using var mismatched = Doubles.Open(qdrant);
        await Assert.ThrowsAsync<InvalidOperationException>(
            () => new QdrantCollectionInitializer(mismatched, NullLogger<QdrantCollectionInitializer>.Instance).StartAsync(CancellationToken.None));

        qdrant.Intercept = (_, _) => Task.FromResult<HttpResponseMessage?>(
            QdrantApiDouble.ErrorResponse(System.Net.HttpStatusCode.ServiceUnavailable, "starting"));
        using var unreachable = Doubles.Open(qdrant, o => o.Collection = "other");
        await new QdrantCollectionInitializer(unreachable, NullLogger<QdrantCollectionInitializer>.Instance).StartAsync(CancellationToken.None);
        qdrant.AssertCompliant();
    }

    [Fact]
    public async Task A_disposed_store_refuses_calls()
    {
        using var qdrant = new QdrantApiDouble();
        var store = Doubles.Open(qdrant);
        store.Dispose();
        store.Dispose();

        await Assert.ThrowsAsync<ObjectDisposedException>(() => store.CountAsync());
        await Assert.ThrowsAsync<ObjectDisposedException>(() => store.UpsertAsync(TestData.Records(0, 1, Doubles.Dimensions)));
        Assert.Empty(qdrant.Requests);
    }

    private sealed class StubEmbedder(EmbeddingModelInfo model) : IEmbedder
    {
        public EmbeddingModelInfo Model { get; } = model;

        public string Device => "cpu";

        public float[][] Embed(IReadOnlyList<RgbImage> images) => throw new NotSupportedException();

        public void Dispose()
        {
        }
    }
}
