using ImageSearch.Contracts;
using ImageSearch.Core;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace ImageSearch.Pipeline;

/// <summary>Which parts of the pipeline a process hosts. The embedded mode hosts all of them.</summary>
[Flags]
public enum PipelineRoles
{
    None = 0,

    /// <summary>Scans and watches the library and announces changes.</summary>
    Watcher = 1,

    /// <summary>Decodes and embeds added images.</summary>
    Ingest = 2,

    /// <summary>Owns the store: applies embeddings, failures and removals.</summary>
    Indexer = 4,

    /// <summary>Answers searches.</summary>
    Query = 8,

    All = Watcher | Ingest | Indexer | Query,
}

public static partial class PipelineServiceCollectionExtensions
{
    /// <summary>The error queue of ingestion: every ImageIngestionFailed (path and reason) is kept there.</summary>
    public const string FailedQueue = "ingest-failed";

    /// <summary>
    /// Registers the handlers for <paramref name="roles"/> and the bus. The same consumers run in every
    /// hosting; only the transport differs (in-memory here). Adapters (decoder, embedder, store,
    /// catalog) are registered by their own Add* extensions.
    /// </summary>
    public static IServiceCollection AddImageSearchPipeline(this IServiceCollection services, IConfiguration configuration, PipelineRoles roles)
    {
        services.AddOptions<LibraryOptions>().Bind(configuration.GetSection(LibraryOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<IngestOptions>().Bind(configuration.GetSection(IngestOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<RerankOptions>().Bind(configuration.GetSection(RerankOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<AugmentationOptions>().Bind(configuration.GetSection(AugmentationOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<IValidateOptions<IngestOptions>>(sp => new DirectUpsertValidator(roles, sp.GetRequiredService<IServiceProviderIsService>()));
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton(_ => new IngestionProgress { Enabled = roles.HasFlag(PipelineRoles.Indexer) });
        services.AddOptions<PriorityOptions>().Bind(configuration.GetSection(PriorityOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        services.TryAddSingleton(sp => sp.GetRequiredService<IOptions<PriorityOptions>>().Value.Resolve());
        services.AddOptions<BusOptions>().Bind(configuration.GetSection(BusOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        var bus = configuration.GetSection(BusOptions.Section).Get<BusOptions>() ?? new BusOptions();
        services.TryAddSingleton<FolderLibrary>();
        services.TryAddSingleton<IngestionStats>();

        services.TryAddSingleton<LibraryScanner>();
        if (roles.HasFlag(PipelineRoles.Watcher))
        {
            services.AddHostedService<LibraryWatcher>();
        }

        if (roles.HasFlag(PipelineRoles.Indexer))
        {
            services.TryAddSingleton<LibraryIndexer>();
        }

        if (roles.HasFlag(PipelineRoles.Ingest))
        {
            services.TryAddSingleton<IngestionLane>();
        }

        if (roles.HasFlag(PipelineRoles.Query))
        {
            services.AddOptions<SearchOptions>().Bind(configuration.GetSection(SearchOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
            services.TryAddSingleton<QueryEmbeddingQueue>();
            services.TryAddSingleton<SearchService>();
        }

        services.AddMassTransit(x =>
        {
            // MassTransit (8.4+) otherwise posts anonymous usage telemetry to usage-tracking.masstransit.io
            // once the bus has run a while: a self-hosted search engine does not phone home (and on a
            // closed network every process logged the failed attempt as a warning with a stack trace).
            x.ConfigureUsageTelemetryOptions(o => o.Enabled = false);

            if (roles.HasFlag(PipelineRoles.Ingest))
            {
                x.AddConsumer<ImageAddedConsumer, ImageAddedConsumerDefinition>();
            }

            if (roles.HasFlag(PipelineRoles.Indexer))
            {
                x.AddConsumer<ImageEmbeddedConsumer, ImageEmbeddedConsumerDefinition>();
                x.AddConsumer<ImageIngestionFailedConsumer, ImageIngestionFailedConsumerDefinition>();
                x.AddConsumer<ImageRemovedConsumer, ImageRemovedConsumerDefinition>();
                x.AddConsumer<ImageAddedFaultConsumer, ImageAddedFaultConsumerDefinition>();
                x.AddConsumer<ImageEmbeddedFaultConsumer, ImageEmbeddedFaultConsumerDefinition>();
                x.AddConsumer<LibraryFilesConsumer>();
            }

            x.AddRequestClient<ListLibraryFiles>(RequestTimeout.After(s: 30));
            if (bus.Transport == BusTransport.RabbitMq)
            {
                x.UsingRabbitMq((context, cfg) =>
                {
                    var clock = context.GetRequiredService<TimeProvider>();
                    var log = context.GetRequiredService<ILoggerFactory>().CreateLogger<HandshakeGuardedTcpClient>();
                    cfg.Host(new Uri(bus.RabbitMqUrl!), h => h.OnRefreshConnectionFactory = factory =>
                    {
                        // Called before every connect attempt: each gets a socket that is closed if
                        // the broker stays silent, so no attempt can wait forever (see the class).
                        factory.SocketFactory = family => new HandshakeGuardedTcpClient(family, bus.HandshakeTimeout,
                            (remote, deadline) => LogSilentBroker(log, bus.BrokerName, remote?.ToString(), deadline), clock);
                        return Task.CompletedTask;
                    });

                    // Failed images also land in a durable queue nobody consumes: the operators' record
                    // of what was refused and why (bounded, oldest dropped first).
                    cfg.Publish<ImageIngestionFailed>(p => p.BindQueue(p.Exchange.ExchangeName, FailedQueue,
                        q => q.SetQueueArgument("x-max-length", 100_000)));
                    cfg.ConfigureEndpoints(context);
                });
            }
            else
            {
                x.UsingInMemory((context, cfg) => cfg.ConfigureEndpoints(context));
            }
        });

        if (bus.Transport == BusTransport.RabbitMq)
        {
            // The host does not wait for this bus (below), so nothing else would notice one that never connects.
            services.TryAddSingleton<BusConnectionMonitor>();
            services.AddHostedService(sp => sp.GetRequiredService<BusConnectionMonitor>());
            services.AddHealthChecks().AddCheck<BusConnectionMonitor>("bus");
        }
        else
        {
            // The in-memory transport drops what is published before a consumer's queue is bound:
            // host start-up waits for the bus, so nothing announced at start is lost. (RabbitMQ's
            // queues are durable, and a start must not hang while the broker is away.)
            services.AddOptions<MassTransitHostOptions>().Configure(o => o.WaitUntilStarted = true);
        }

        return services;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "RabbitMQ at {Broker} ({Remote}) accepted the connection but sent nothing for {Deadline}; closing it so that the connect is retried")]
    private static partial void LogSilentBroker(ILogger logger, string broker, string? remote, TimeSpan deadline);
}

/// <summary>An ingest process that upserts directly must have a vector store to upsert into.</summary>
internal sealed class DirectUpsertValidator(PipelineRoles roles, IServiceProviderIsService services) : IValidateOptions<IngestOptions>
{
    public ValidateOptionsResult Validate(string? name, IngestOptions options) =>
        options.UpsertDirectly && roles.HasFlag(PipelineRoles.Ingest) && !services.IsService(typeof(IVectorStore))
            ? ValidateOptionsResult.Fail($"{IngestOptions.Section}:{nameof(IngestOptions.UpsertDirectly)} is set but this process has no vector store " +
                "(workers share one only with Store:Kind=Qdrant).")
            : ValidateOptionsResult.Success;
}
