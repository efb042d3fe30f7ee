using ImageSearch.Core;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace ImageSearch.Embedding;

/// <summary>Registers <see cref="OnnxEmbedder"/> as the application's <see cref="IEmbedder"/>.</summary>
public static class EmbeddingServiceCollectionExtensions
{
    /// <summary>
    /// Registers the embedder with options bound from <paramref name="section"/> (typically
    /// <c>configuration.GetSection(EmbeddingOptions.SectionName)</c>), validated when the host starts.
    /// The model is loaded on first resolution of <see cref="IEmbedder"/> or <see cref="OnnxEmbedder"/>
    /// (one shared instance, disposed with the container). A registered <see cref="WorkPriorities"/>
    /// sets the priority of ONNX Runtime's threads.
    /// </summary>
    public static IServiceCollection AddOnnxEmbedder(this IServiceCollection services, IConfiguration section)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(section);
        services.AddOptions<EmbeddingOptions>().Bind(section).ValidateOnStart();
        return AddCore(services);
    }

    /// <summary>Registers the embedder with options set by <paramref name="configure"/>, validated when the host starts.</summary>
    public static IServiceCollection AddOnnxEmbedder(this IServiceCollection services, Action<EmbeddingOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        services.AddOptions<EmbeddingOptions>().Configure(configure).ValidateOnStart();
        return AddCore(services);
    }

    private static IServiceCollection AddCore(IServiceCollection services)
    {
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<EmbeddingOptions>, EmbeddingOptionsValidator>());
        services.TryAddSingleton(provider => new OnnxEmbedder(
            provider.GetRequiredService<IOptions<EmbeddingOptions>>().Value,
            provider.GetService<ILogger<OnnxEmbedder>>(),
            provider.GetService<WorkPriorities>()));
        services.TryAddSingleton<IEmbedder>(provider => provider.GetRequiredService<OnnxEmbedder>());
        return services;
    }
}
