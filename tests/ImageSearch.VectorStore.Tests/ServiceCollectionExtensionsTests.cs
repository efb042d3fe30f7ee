using ImageSearch.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace ImageSearch.VectorStore.Tests;

public sealed class ServiceCollectionExtensionsTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public async Task Registers_the_store_and_a_catalog_in_its_folder()
    {
        var services = new ServiceCollection()
            .AddSingleton(new EmbeddingModelInfo("test", "1", 8, 8, 8))
            .AddEmbeddedVectorStore(o => o.Directory = _temp.Path);
        await using var provider = services.BuildServiceProvider();

        var store = provider.GetRequiredService<IVectorStore>();
        Assert.Same(provider.GetRequiredService<EmbeddedVectorStore>(), store);
        Assert.Equal(8, store.Dimensions);
        await provider.GetRequiredService<ICatalog>().SetIndexedAsync("a.jpg", TestData.Id(1), 1, TestData.Epoch);
        Assert.True(File.Exists(Path.Combine(_temp.Path, SqliteCatalog.DefaultFileName)));
    }

    [Fact]
    public void Invalid_options_fail_validation()
    {
        var services = new ServiceCollection()
            .AddSingleton(new EmbeddingModelInfo("test", "1", 8, 8, 8))
            .AddEmbeddedVectorStore(o => o.EfSearch = 0);
        using var provider = services.BuildServiceProvider();
        var error = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IOptions<EmbeddedStoreOptions>>().Value);
        Assert.Equal(2, error.Failures.Count()); // Directory missing, EfSearch out of range
    }
}
