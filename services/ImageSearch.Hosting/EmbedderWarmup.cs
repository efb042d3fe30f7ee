using ImageSearch.Core;
using Microsoft.Extensions.Hosting;

namespace ImageSearch.Hosting;

/// <summary>
/// Loads the model when the process starts rather than on the first image: a broken model, a
/// missing calibration or an unavailable GPU fails the start with its message, and the first batch
/// does not pay for the load.
/// </summary>
internal sealed class EmbedderWarmup(IEmbedder embedder) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        _ = embedder.Model;
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
