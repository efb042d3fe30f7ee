using ImageSearch.Core;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace ImageSearch.Qdrant;

/// <summary>Registers the Qdrant store.</summary>
public static class ServiceCollectionExtensions
{
    /// <summary>
    /// Registers <see cref="QdrantVectorStore"/> as the <see cref="IVectorStore"/> singleton, with
    /// <see cref="QdrantOptions"/> bound from <paramref name="configuration"/> and validated at start, a
    /// hosted service that checks the collection at start, and the health check "qdrant"
    /// (<see cref="QdrantHealthCheck"/>, tagged "ready"). The store needs the embedding model's identity:
    /// a registered <see cref="EmbeddingModelInfo"/>, or else the <see cref="IEmbedder.Model"/> of the
    /// registered <see cref="IEmbedder"/>.
    /// </summary>
    /// <param name="services">The container.</param>
    /// <param name="configuration">The options section, e.g. <c>configuration.GetSection("Qdrant")</c>.</param>
    public static IServiceCollection AddQdrantVectorStore(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configuration);
        services.AddOptions<QdrantOptions>().Bind(configuration).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<QdrantOptions>, QdrantOptionsValidator>());
        services.TryAddSingleton(sp => new QdrantVectorStore(
            sp.GetRequiredService<IOptions<QdrantOptions>>().Value,
            ResolveModel(sp),
            handler: null,
            sp.GetService<ILogger<QdrantVectorStore>>()));
        services.TryAddSingleton<IVectorStore>(sp => sp.GetRequiredService<QdrantVectorStore>());
        services.AddHostedService<QdrantCollectionInitializer>();
        services.AddHealthChecks().AddCheck<QdrantHealthCheck>("qdrant", tags: ["ready"]);
        return services;
    }

    private static EmbeddingModelInfo ResolveModel(IServiceProvider services) =>
        services.GetService<EmbeddingModelInfo>()
        ?? services.GetService<IEmbedder>()?.Model
        ?? throw new InvalidOperationException(
            $"The Qdrant vector store needs the embedding model's identity: register {nameof(EmbeddingModelInfo)} or {nameof(IEmbedder)}.");
}
