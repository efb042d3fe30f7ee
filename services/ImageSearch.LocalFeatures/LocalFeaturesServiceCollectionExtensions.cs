using ImageSearch.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace ImageSearch.LocalFeatures;

public static class LocalFeaturesServiceCollectionExtensions
{
    /// <summary>
    /// Registers SIFT extraction (<see cref="ILocalFeatureExtractor"/>, needs an <see cref="IImageDecoder"/>)
    /// and geometric verification (<see cref="IGeometricVerifier"/>), with <see cref="LocalFeatureOptions"/>
    /// bound by the caller.
    /// </summary>
    public static IServiceCollection AddSiftLocalFeatures(this IServiceCollection services)
    {
        services.TryAddSingleton<ILocalFeatureExtractor, SiftExtractor>();
        services.TryAddSingleton<IGeometricVerifier, GeometricVerifier>();
        return services;
    }
}
