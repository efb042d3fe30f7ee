using ImageSearch.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace ImageSearch.VectorStore;

/// <summary>Registers the embedded store and the SQLite catalog.</summary>
public static class ServiceCollectionExtensions
{
    /// <summary>
    /// Registers <see cref="EmbeddedVectorStore"/> as the <see cref="IVectorStore"/> singleton (opened on
    /// first use, options validated at start), and a <see cref="SqliteCatalog"/> in the same folder as
    /// <see cref="ICatalog"/> unless one is already registered.
    /// The store needs the embedding model's identity: a registered <see cref="EmbeddingModelInfo"/>,
    /// or else the <see cref="IEmbedder.Model"/> of the registered <see cref="IEmbedder"/>.
    /// </summary>
    /// <param name="services">The container.</param>
    /// <param name="configure">Sets the options (also bindable from configuration with Configure&lt;EmbeddedStoreOptions&gt;).</param>
    public static IServiceCollection AddEmbeddedVectorStore(this IServiceCollection services, Action<EmbeddedStoreOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var options = services.AddOptions<EmbeddedStoreOptions>();
        if (configure is not null)
        {
            options.Configure(configure);
        }

        options.ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<EmbeddedStoreOptions>, EmbeddedStoreOptionsValidator>());
        services.TryAddSingleton(sp => new EmbeddedVectorStore(
            sp.GetRequiredService<IOptions<EmbeddedStoreOptions>>().Value,
            ResolveModel(sp),
            sp.GetService<ILogger<EmbeddedVectorStore>>()));
        services.TryAddSingleton<IVectorStore>(sp => sp.GetRequiredService<EmbeddedVectorStore>());
        services.TryAddSingleton<ICatalog>(sp => new SqliteCatalog(
            Path.Combine(sp.GetRequiredService<IOptions<EmbeddedStoreOptions>>().Value.Directory, SqliteCatalog.DefaultFileName),
            sp.GetService<TimeProvider>()));
        return services;
    }

    /// <summary>Registers a <see cref="SqliteCatalog"/> at <paramref name="databasePath"/> as <see cref="ICatalog"/> (for hosts whose vectors live elsewhere).</summary>
    public static IServiceCollection AddSqliteCatalog(this IServiceCollection services, string databasePath)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentException.ThrowIfNullOrWhiteSpace(databasePath);
        services.TryAddSingleton<ICatalog>(sp => new SqliteCatalog(databasePath, sp.GetService<TimeProvider>()));
        return services;
    }

    private static EmbeddingModelInfo ResolveModel(IServiceProvider services) =>
        services.GetService<EmbeddingModelInfo>()
        ?? services.GetService<IEmbedder>()?.Model
        ?? throw new InvalidOperationException(
            $"The embedded vector store needs the embedding model's identity: register {nameof(EmbeddingModelInfo)} or {nameof(IEmbedder)}.");
}
