using ImageSearch.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace ImageSearch.Imaging;

/// <summary>Registers the libvips image decoder.</summary>
public static class ImagingServiceCollectionExtensions
{
    /// <summary>
    /// Registers <see cref="VipsImageDecoder"/> as the singleton <see cref="IImageDecoder"/>, unless one
    /// is registered already. libvips is loaded when the decoder is first resolved, which fails with
    /// <see cref="InvalidOperationException"/> when libvips42 is not installed.
    /// </summary>
    public static IServiceCollection AddVipsImageDecoder(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.TryAddSingleton<IImageDecoder, VipsImageDecoder>();
        return services;
    }
}
