using ImageSearch.Contracts;
using MassTransit;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace ImageSearch.Pipeline;

/// <summary>
/// Stores embeddings, in batches so that one durable commit covers many images. A file whose
/// worker-stored vector was deleted before it was linked is announced again (ImageAdded), before this
/// batch is acknowledged, so a worker embeds it anew.
/// </summary>
public sealed class ImageEmbeddedConsumer(LibraryIndexer indexer, IngestionStats stats) : IConsumer<Batch<ImageEmbedded>>
{
    public async Task Consume(ConsumeContext<Batch<ImageEmbedded>> context)
    {
        var again = await indexer.ApplyEmbeddedAsync(context.Message.Select(m => m.Message).ToList(), context.CancellationToken).ConfigureAwait(false);
        stats.RecordIndexed();
        if (again.Count > 0)
        {
            await context.PublishBatch(again.DistinctBy(m => m.Path, StringComparer.Ordinal).Select(m => new ImageAdded(m.Path, m.SizeBytes, m.ModifiedAt)),
                context.CancellationToken).ConfigureAwait(false);
        }

        foreach (var m in context.Message)
        {
            if (m.Headers.Get<double>(IngestionStats.QueueWaitHeader) is { } wait)
            {
                stats.RecordQueueWait(wait);
            }
        }
    }
}

/// <summary>Records a permanent ingestion failure with its reason.</summary>
public sealed class ImageIngestionFailedConsumer(LibraryIndexer indexer) : IConsumer<ImageIngestionFailed>
{
    public Task Consume(ConsumeContext<ImageIngestionFailed> context) =>
        indexer.ApplyFailedAsync(context.Message, context.CancellationToken);
}

/// <summary>Forgets a removed file and deletes its image when no other file holds it.</summary>
public sealed class ImageRemovedConsumer(LibraryIndexer indexer) : IConsumer<ImageRemoved>
{
    public Task Consume(ConsumeContext<ImageRemoved> context) =>
        indexer.ApplyRemovedAsync(context.Message.Path, context.CancellationToken);
}

/// <summary>
/// An added image whose ingestion kept failing after every retry (not a bad image: those are
/// reported directly, but e.g. an unreadable file or a model error) is recorded as failed with the
/// error, so it shows in status and no longer counts as pending, instead of vanishing into the
/// ingest queue's error queue unnoticed. A later change to the file retries it.
/// </summary>
public sealed class ImageAddedFaultConsumer(LibraryIndexer indexer) : IConsumer<Fault<ImageAdded>>
{
    public Task Consume(ConsumeContext<Fault<ImageAdded>> context)
    {
        var added = context.Message.Message;
        var error = context.Message.Exceptions.FirstOrDefault();
        var reason = $"Ingestion failed after retries: {error?.ExceptionType}: {error?.Message}";
        return indexer.ApplyFailedAsync(new ImageIngestionFailed(added.Path, reason, added.SizeBytes, added.ModifiedAt), context.CancellationToken);
    }
}

/// <summary>
/// An embedding the indexer could not store after every retry (e.g. the index's disk stayed full
/// for minutes): the file stops counting as pending, so the next library scan, which skips pending
/// files, announces it again and it is ingested once the store can be written. Nothing is recorded
/// in the catalog: the file is not broken, and a write there would likely fail the same way.
/// Before this, such a file stayed pending, and unindexed, until the process restarted.
/// </summary>
public sealed partial class ImageEmbeddedFaultConsumer(IngestionProgress progress, ILogger<ImageEmbeddedFaultConsumer> logger) : IConsumer<Fault<ImageEmbedded>>
{
    public Task Consume(ConsumeContext<Fault<ImageEmbedded>> context)
    {
        var path = context.Message.Message.Path;
        LogNotIndexed(logger, path, context.Message.Exceptions.FirstOrDefault()?.Message ?? "unknown error");
        progress.Settle(path);
        return Task.CompletedTask;
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Could not index {Path} after retries ({Reason}); the next library scan announces it again")]
    private static partial void LogNotIndexed(ILogger logger, string path, string reason);
}

public sealed class ImageEmbeddedFaultConsumerDefinition : ConsumerDefinition<ImageEmbeddedFaultConsumer>
{
    public ImageEmbeddedFaultConsumerDefinition() => EndpointName = "indexer";
}

/// <summary>All indexer consumers share the "indexer" endpoint (one queue where the store lives).</summary>
public sealed class ImageEmbeddedConsumerDefinition : ConsumerDefinition<ImageEmbeddedConsumer>
{
    private readonly IngestOptions options;

    public ImageEmbeddedConsumerDefinition(IOptions<IngestOptions> options)
    {
        this.options = options.Value;
        EndpointName = "indexer";
    }

    protected override void ConfigureConsumer(IReceiveEndpointConfigurator endpointConfigurator,
        IConsumerConfigurator<ImageEmbeddedConsumer> consumerConfigurator, IRegistrationContext context)
    {
        var limit = Math.Max(64, options.BatchSize * options.ConcurrentBatches);
        endpointConfigurator.PrefetchCount = limit;
        endpointConfigurator.UseMessageRetry(r => r.Exponential(10, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(200)));
        consumerConfigurator.Options<BatchOptions>(b => b.SetMessageLimit(limit).SetTimeLimit(options.BatchWait).SetConcurrencyLimit(1));
    }
}

public sealed class ImageIngestionFailedConsumerDefinition : ConsumerDefinition<ImageIngestionFailedConsumer>
{
    public ImageIngestionFailedConsumerDefinition() => EndpointName = "indexer";

    protected override void ConfigureConsumer(IReceiveEndpointConfigurator endpointConfigurator,
        IConsumerConfigurator<ImageIngestionFailedConsumer> consumerConfigurator, IRegistrationContext context) =>
        endpointConfigurator.UseMessageRetry(r => r.Exponential(10, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(200)));
}

public sealed class ImageAddedFaultConsumerDefinition : ConsumerDefinition<ImageAddedFaultConsumer>
{
    public ImageAddedFaultConsumerDefinition() => EndpointName = "indexer";
}

public sealed class ImageRemovedConsumerDefinition : ConsumerDefinition<ImageRemovedConsumer>
{
    public ImageRemovedConsumerDefinition() => EndpointName = "indexer";

    protected override void ConfigureConsumer(IReceiveEndpointConfigurator endpointConfigurator,
        IConsumerConfigurator<ImageRemovedConsumer> consumerConfigurator, IRegistrationContext context) =>
        endpointConfigurator.UseMessageRetry(r => r.Exponential(10, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(200)));
}
