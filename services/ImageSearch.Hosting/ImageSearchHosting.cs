using System.ComponentModel.DataAnnotations;
using ImageSearch.Core;
using ImageSearch.Embedding;
using ImageSearch.Imaging;
using ImageSearch.LocalFeatures;
using ImageSearch.Pipeline;
using ImageSearch.Qdrant;
using ImageSearch.VectorStore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace ImageSearch.Hosting;

/// <summary>Where the index lives. Section "Index".</summary>
public sealed class IndexOptions
{
    public const string Section = "Index";

    /// <summary>
    /// Root folder of the index. Each model (name, version and calibration) gets its own subfolder,
    /// so changing the model builds a new index and never mixes vectors.
    /// </summary>
    [Required]
    public string Directory { get; set; } = "";
}

/// <summary>Where vectors live. Configuration key "Store:Kind".</summary>
public enum StoreKind
{
    /// <summary>The embedded HNSW index on disk (default).</summary>
    Embedded,

    /// <summary>A Qdrant server over its REST API (section "Qdrant": Url, ApiKey, Collection, ...).</summary>
    Qdrant,
}

public static class ImageSearchHosting
{
    public const string StoreKindKey = "Store:Kind";

    /// <summary>
    /// Adds the adapters (libvips decoder, ONNX Runtime embedder, embedded HNSW store and catalog)
    /// and the pipeline roles this process hosts. Every deployable calls this one method. The store
    /// lives with the indexer (embedded), or in Qdrant, shared by the indexer and the ingest workers,
    /// which then upsert the vectors themselves (<see cref="IngestOptions.UpsertDirectly"/>).
    /// </summary>
    public static IHostApplicationBuilder AddImageSearch(this IHostApplicationBuilder builder, PipelineRoles roles)
    {
        var services = builder.Services;
        var configuration = builder.Configuration;
        var localFeatures = configuration.GetSection(RerankOptions.Section).Get<RerankOptions>()?.Enabled ?? new RerankOptions().Enabled;
        if (roles.HasFlag(PipelineRoles.Ingest) || roles.HasFlag(PipelineRoles.Query))
        {
            services.AddVipsImageDecoder();

            // Local features: extracted at ingestion, verified at query time (Rerank:Enabled).
            services.AddOptions<LocalFeatureOptions>().Bind(configuration.GetSection(LocalFeatureOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
            if (localFeatures)
            {
                services.AddSiftLocalFeatures();
            }
        }

        // The indexer checks that embeddings come from its model, and the store is named after it.
        if ((roles & (PipelineRoles.Ingest | PipelineRoles.Indexer | PipelineRoles.Query)) != 0)
        {
            services.AddOnnxEmbedder(configuration.GetSection(EmbeddingOptions.SectionName));
            services.AddHostedService<EmbedderWarmup>();
        }

        var qdrant = configuration.GetValue<StoreKind>(StoreKindKey) == StoreKind.Qdrant;
        if ((roles & (PipelineRoles.Indexer | PipelineRoles.Query)) != 0)
        {
            services.AddOptions<IndexOptions>().Bind(configuration.GetSection(IndexOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
            if (qdrant)
            {
                // Vectors in Qdrant; the catalog (paths, failures) stays a local SQLite file of this process.
                services.AddQdrantVectorStore(configuration.GetSection("Qdrant"));
                services.AddSingleton<ICatalog>(sp =>
                {
                    var folder = Path.Combine(Path.GetFullPath(sp.GetRequiredService<IOptions<IndexOptions>>().Value.Directory),
                        FolderName(sp.GetRequiredService<IEmbedder>().Model));
                    Directory.CreateDirectory(folder);
                    return new SqliteCatalog(Path.Combine(folder, SqliteCatalog.DefaultFileName), sp.GetService<TimeProvider>());
                });
            }
            else
            {
                services.AddEmbeddedVectorStore();
                services.AddOptions<EmbeddedStoreOptions>()
                    .Bind(configuration.GetSection(IndexOptions.Section + ":Hnsw"))
                    .Configure<IOptions<IndexOptions>, IEmbedder>((store, index, embedder) =>
                        store.Directory = Path.Combine(Path.GetFullPath(index.Value.Directory), FolderName(embedder.Model, localFeatures)));
            }

            services.AddHealthChecks().AddCheck<IndexHealthCheck>("index");
        }
        else if (roles.HasFlag(PipelineRoles.Ingest) && qdrant)
        {
            // A worker shares the Qdrant store (no catalog, no index folder); with the embedded store
            // a worker has none and sends its vectors to the process that owns the index.
            services.AddQdrantVectorStore(configuration.GetSection("Qdrant"));
        }

        if (roles.HasFlag(PipelineRoles.Ingest) && !roles.HasFlag(PipelineRoles.Indexer) && qdrant)
        {
            // The store is shared, so the worker upserts what it embeds (durably, before its batch is
            // acknowledged) and the vectors do not cross the bus; the indexer only links paths. A
            // default set before the section is bound: Ingest:UpsertDirectly=false sends them instead.
            services.AddOptions<IngestOptions>().Configure(o => o.UpsertDirectly = true);
        }

        services.AddImageSearchPipeline(configuration, roles);
        return builder;
    }

    /// <summary>
    /// A file-system-safe folder name for a model key such as "inception-v3-mixed7@1+cal.0a1b", with
    /// "+sift1" when the index also holds local features (turning them on builds a new index, as a
    /// model change does, so every image gets its features; the Qdrant catalog keeps the plain name).
    /// </summary>
    public static string FolderName(EmbeddingModelInfo model, bool localFeatures = false) =>
        string.Concat(model.Key.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '.' or '_' or '@' or '+' ? c : '_')) + (localFeatures ? "+sift1" : "");
}

/// <summary>Ready when the store opens and answers a count.</summary>
internal sealed class IndexHealthCheck(IVectorStore store) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        try
        {
            var count = await store.CountAsync(cancellationToken).ConfigureAwait(false);

            // Readable but not writable (a full disk): searches work, ingestion does not.
            return store is EmbeddedVectorStore { LastWriteError: { } error }
                ? HealthCheckResult.Degraded($"{count} images indexed; the last write failed: {error}")
                : HealthCheckResult.Healthy($"{count} images indexed");
        }
        catch (Exception ex)
        {
            return HealthCheckResult.Unhealthy("The index cannot be read.", ex);
        }
    }
}
