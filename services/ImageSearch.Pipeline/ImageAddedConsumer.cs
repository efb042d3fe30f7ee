using System.Security.Cryptography;
using ImageSearch.Contracts;
using ImageSearch.Core;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace ImageSearch.Pipeline;

/// <summary>
/// The ingest worker's handler: reads a batch of added files, decodes them in parallel (and extracts
/// their local features when an <see cref="ILocalFeatureExtractor"/> is registered), embeds them
/// in one model call and publishes ImageEmbedded (or ImageIngestionFailed with the reason). With
/// <see cref="IngestOptions.UpsertDirectly"/> (a worker sharing a Qdrant store) it first upserts the
/// new vectors itself, in one durable call per batch, and publishes the events without them; the
/// batch is acknowledged only after both. Point ids derive from content, so redelivery is harmless:
/// the stored point is found and reused. Transient I/O and store errors propagate so the bus
/// retries; a broken image is a permanent failure and is reported, never retried. Decoding, local
/// features and the model run on the <see cref="IngestionLane"/>'s threads, below searches in priority.
/// </summary>
public sealed partial class ImageAddedConsumer(
    FolderLibrary library,
    IImageDecoder decoder,
    IEmbedder embedder,
    IngestionLane lane,
    IServiceProvider services,
    IOptions<IngestOptions> ingestOptions,
    IOptions<LibraryOptions> libraryOptions,
    TimeProvider clock,
    ILogger<ImageAddedConsumer> logger) : IConsumer<Batch<ImageAdded>>
{
    public async Task Consume(ConsumeContext<Batch<ImageAdded>> context)
    {
        // The last announcement of a path wins; duplicates in one batch are one piece of work.
        var received = DateTime.UtcNow;
        var latest = context.Message
            .GroupBy(m => m.Message.Path, StringComparer.Ordinal)
            .Select(g => g.Last())
            .ToArray();
        var messages = latest.Select(m => m.Message).ToArray();
        var waits = latest.Select(m => m.SentTime is { } sent ? Math.Max(0, (received - sent).TotalMilliseconds) : 0).ToArray();
        var store = services.GetService<IVectorStore>();
        var features = services.GetService<ILocalFeatureExtractor>();
        var items = new Item[messages.Length];
        var threads = ingestOptions.Value.DecodeThreads is > 0 and var t ? t : Environment.ProcessorCount;
        var model = embedder.Model;
        await Parallel.ForAsync(0, messages.Length, new ParallelOptions { MaxDegreeOfParallelism = threads, CancellationToken = context.CancellationToken },
            async (i, ct) => items[i] = await PrepareAsync(messages[i], store, features, model, ct).ConfigureAwait(false)).ConfigureAwait(false);

        var toEmbed = items.Where(i => i.Prepared is not null).ToArray();
        if (toEmbed.Length > 0)
        {
            var pixels = toEmbed.Select(i => i.Prepared!.Pixels).ToArray();
            // The throughput session even for a batch of one: the latency session's threads run at the query model's level.
            var vectors = await lane.RunAsync(() => embedder.Embed(pixels, EmbeddingWorkload.Throughput), context.CancellationToken).ConfigureAwait(false);
            for (var k = 0; k < toEmbed.Length; k++)
            {
                toEmbed[k].Vector = vectors[k];
            }
        }

        var upsertDirectly = ingestOptions.Value.UpsertDirectly;
        if (upsertDirectly && toEmbed.Length > 0)
        {
            // Durable before anything is published or acknowledged. Items found in the store are
            // not written again; the indexer links their paths (and repoints a stale payload).
            var target = store ?? throw new InvalidOperationException($"{nameof(IngestOptions.UpsertDirectly)} needs a vector store in this process.");
            var addedAt = clock.GetUtcNow();
            // Two copies of one file in a batch are one point.
            await target.UpsertAsync(toEmbed.DistinctBy(i => i.Id).Select(i => new VectorRecord(i.Id, i.Vector!,
                new ImagePayload(i.Message.Path, i.SizeBytes, i.Width, i.Height, i.ContentHash!, addedAt), i.LocalFeatures)).ToList(),
                context.CancellationToken).ConfigureAwait(false);
        }

        var embedded = new List<(ImageEmbedded Message, double WaitMs)>();
        var failed = new List<ImageIngestionFailed>();
        var removed = new List<ImageRemoved>();
        for (var i = 0; i < items.Length; i++)
        {
            var item = items[i];
            var m = item.Message;
            if (item.Missing)
            {
                removed.Add(new ImageRemoved(m.Path));
            }
            else if (item.Failure is not null)
            {
                LogFailed(logger, m.Path, item.Failure);
                failed.Add(new ImageIngestionFailed(m.Path, item.Failure, item.SizeBytes, item.ModifiedAt));
            }
            else
            {
                embedded.Add((new ImageEmbedded(m.Path, item.Id.Value, upsertDirectly ? [] : item.Vector!, model.Key, item.SizeBytes,
                    item.Width, item.Height, item.ContentHash!, item.ModifiedAt, VectorStored: upsertDirectly,
                    LocalFeatures: upsertDirectly ? null : item.LocalFeatures), waits[i]));
            }
        }

        // Concurrently: over RabbitMQ each publish waits for the broker's confirm, so one at a time
        // would cost a round trip per image.
        await Task.WhenAll(embedded.Select(e =>
            context.Publish(e.Message, p => p.Headers.Set(IngestionStats.QueueWaitHeader, e.WaitMs), context.CancellationToken))).ConfigureAwait(false);

        await PublishAsync(context, failed).ConfigureAwait(false);
        await PublishAsync(context, removed).ConfigureAwait(false);
    }

    private async Task<Item> PrepareAsync(ImageAdded message, IVectorStore? store, ILocalFeatureExtractor? features, EmbeddingModelInfo model, CancellationToken ct)
    {
        var item = new Item(message);
        var file = library.Stat(message.Path);
        if (file is null)
        {
            item.Missing = true;
            return item;
        }

        item.SizeBytes = file.SizeBytes;
        item.ModifiedAt = file.ModifiedAt;
        var maxBytes = libraryOptions.Value.MaxFileBytes;
        if (file.SizeBytes > maxBytes)
        {
            item.Failure = $"File is {file.SizeBytes:N0} bytes; the limit is {maxBytes:N0}.";
            return item;
        }

        byte[] bytes;
        try
        {
            bytes = await File.ReadAllBytesAsync(library.ToFull(message.Path), ct).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            item.Missing = true;
            return item;
        }

        var hash = SHA256.HashData(bytes);
        item.ContentHash = Convert.ToHexStringLower(hash);
        item.Id = ImageId.FromContentHash(hash);
        item.SizeBytes = bytes.Length;

        // Same bytes already embedded (a copy, a rename, a redelivery): reuse the stored vector.
        if (store is not null && await store.GetAsync(item.Id, ct).ConfigureAwait(false) is { } existing)
        {
            item.Vector = existing.Vector;
            item.Width = existing.Payload.Width;
            item.Height = existing.Payload.Height;
            return item;
        }

        await lane.RunAsync(() =>
        {
            try
            {
                var limits = new DecodeLimits(maxBytes);
                // One decode for the model's input and the view local features come from, where it can serve both.
                PreparedImage prepared;
                if (features is null)
                {
                    prepared = decoder.Prepare(bytes, model.InputWidth, model.InputHeight, null, limits);
                }
                else
                {
                    (prepared, var fitted) = decoder.PrepareAndFit(bytes, model.InputWidth, model.InputHeight, features.MaxSide, null, limits);
                    item.LocalFeatures = features.Extract(fitted).ToBytes();
                }

                item.Prepared = prepared;
                item.Width = prepared.Original.Width;
                item.Height = prepared.Original.Height;
            }
            catch (InvalidImageException ex)
            {
                item.Failure = ex.Message;
            }

            return item;
        }, ct).ConfigureAwait(false);
        return item;
    }

    private static async Task PublishAsync<T>(ConsumeContext context, List<T> messages)
        where T : class
    {
        if (messages.Count > 0)
        {
            await context.PublishBatch(messages, context.CancellationToken).ConfigureAwait(false);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cannot ingest {Path}: {Reason}")]
    private static partial void LogFailed(ILogger logger, string path, string reason);

    private sealed class Item(ImageAdded message)
    {
        public ImageAdded Message { get; } = message;

        public bool Missing { get; set; }

        public string? Failure { get; set; }

        public long SizeBytes { get; set; } = message.SizeBytes;

        public DateTimeOffset ModifiedAt { get; set; } = message.ModifiedAt;

        public ImageId Id { get; set; }

        public string? ContentHash { get; set; }

        public int Width { get; set; }

        public int Height { get; set; }

        public PreparedImage? Prepared { get; set; }

        public float[]? Vector { get; set; }

        public byte[]? LocalFeatures { get; set; }
    }
}

/// <summary>Batching and concurrency for <see cref="ImageAddedConsumer"/>, from <see cref="IngestOptions"/>.</summary>
public sealed class ImageAddedConsumerDefinition : ConsumerDefinition<ImageAddedConsumer>
{
    private readonly IngestOptions options;

    public ImageAddedConsumerDefinition(IOptions<IngestOptions> options)
    {
        this.options = options.Value;
        EndpointName = "ingest";
        ConcurrentMessageLimit = this.options.BatchSize * this.options.ConcurrentBatches;
    }

    protected override void ConfigureConsumer(IReceiveEndpointConfigurator endpointConfigurator,
        IConsumerConfigurator<ImageAddedConsumer> consumerConfigurator, IRegistrationContext context)
    {
        endpointConfigurator.PrefetchCount = options.BatchSize * options.ConcurrentBatches;
        endpointConfigurator.UseMessageRetry(r => r.Exponential(5, TimeSpan.FromMilliseconds(200), TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(200)));
        consumerConfigurator.Options<BatchOptions>(b => b
            .SetMessageLimit(options.BatchSize)
            .SetTimeLimit(options.BatchWait)
            .SetConcurrencyLimit(options.ConcurrentBatches));
    }
}
