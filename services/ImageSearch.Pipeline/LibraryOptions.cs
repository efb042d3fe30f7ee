using System.ComponentModel.DataAnnotations;

namespace ImageSearch.Pipeline;

/// <summary>The image library: the folder (or mounted bucket) that is watched and indexed. Section "Library".</summary>
public sealed class LibraryOptions
{
    public const string Section = "Library";

    /// <summary>Root folder of the library. Paths in messages and results are relative to it.</summary>
    [Required]
    public string Root { get; set; } = "";

    /// <summary>Follow changes with a file watcher after the initial scan.</summary>
    public bool Watch { get; set; } = true;

    /// <summary>Full rescan interval: the fallback for changes a file watcher misses (network mounts, overflow).</summary>
    [Range(typeof(TimeSpan), "00:00:05", "7.00:00:00")]
    public TimeSpan RescanInterval { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>A file must be unchanged for this long before it is ingested (it may still be being written).</summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:10:00")]
    public TimeSpan SettleTime { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>File extensions considered images (content is still sniffed when decoding).</summary>
    [MinLength(1)]
    public string[] Extensions { get; set; } = [".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".tif", ".tiff", ".heic", ".heif", ".avif"];

    /// <summary>Largest file accepted; bigger files are recorded as failed without being read.</summary>
    [Range(1, long.MaxValue)]
    public long MaxFileBytes { get; set; } = 64L * 1024 * 1024;
}

/// <summary>Ingestion tuning. Section "Ingest".</summary>
public sealed class IngestOptions
{
    public const string Section = "Ingest";

    /// <summary>Images per model call.</summary>
    [Range(1, 512)]
    public int BatchSize { get; set; } = 16;

    /// <summary>How long a partial batch waits for more images.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:00:10")]
    public TimeSpan BatchWait { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// Batches in flight at once; default one per processor (at least 2). Each batch decodes and
    /// then runs the model on its own thread, so on the CPU every core does useful work without
    /// the barriers of splitting one batch across cores (see EmbeddingOptions.BatchIntraOpThreads).
    /// </summary>
    [Range(1, 64)]
    public int ConcurrentBatches { get; set; } = Math.Clamp(Environment.ProcessorCount, 2, 64);

    /// <summary>
    /// Threads decoding images within one batch; 0 = processor count. Default 1: the concurrent
    /// batches already spread decoding over the cores.
    /// </summary>
    [Range(0, 256)]
    public int DecodeThreads { get; set; } = 1;

    /// <summary>
    /// The ingest handler upserts the vectors it computes into the vector store of its own process (one
    /// durable upsert per batch, before the batch is acknowledged) and publishes ImageEmbedded without
    /// them; the indexer then only links paths to images. The composition turns it on for a process
    /// that hosts ingestion but not the indexer when the store is shared (Store:Kind=Qdrant), so vectors
    /// do not cross the bus; otherwise the indexer, where the store lives, applies them. Needs a vector
    /// store registered in the process (checked at start).
    /// </summary>
    public bool UpsertDirectly { get; set; }
}
