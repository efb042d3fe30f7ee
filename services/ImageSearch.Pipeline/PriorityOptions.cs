using System.ComponentModel.DataAnnotations;
using ImageSearch.Core;

namespace ImageSearch.Pipeline;

/// <summary>
/// How much the background kinds of work give way to requests, in Linux nice levels below the
/// process's own priority (0 = the same as requests; 19 = the lowest). Section "Priority".
/// </summary>
/// <remarks>
/// On two cores, four clients searching keep about five threads runnable: with equal priorities a
/// request whose embedding is done waits for the next query's model run, and an image being
/// ingested slows every search. With the defaults the order is: requests (form reading, decoding,
/// k-NN, re-ranking, the response), then queries' local features, then the query model, then
/// ingestion, which, like a desktop
/// indexer, only gets the cores that searches leave idle (measured in docs/BENCHMARKS.md, "Priorities").
/// The levels order the process's own threads; other processes compete through their CPU groups
/// (systemd services, containers), as before.
/// </remarks>
public sealed class PriorityOptions
{
    public const string Section = "Priority";

    /// <summary>
    /// Nice levels below the process for extracting a query's local features (re-ranking), which runs
    /// beside its embedding and is needed only once that is done. Default 5.
    /// </summary>
    [Range(0, ThreadNice.Lowest)]
    public int QueryFeatures { get; set; } = 5;

    /// <summary>Nice levels below the process for the query model's threads. Default 10.</summary>
    [Range(0, ThreadNice.Lowest)]
    public int QueryModel { get; set; } = 10;

    /// <summary>Nice levels below the process for ingestion's decode, local features and model. Default 19.</summary>
    [Range(0, ThreadNice.Lowest)]
    public int Ingestion { get; set; } = ThreadNice.Lowest;

    /// <summary>The nice values these levels give in this process.</summary>
    public WorkPriorities Resolve() => WorkPriorities.Below(QueryFeatures, QueryModel, Ingestion);
}

/// <summary>
/// The threads that do ingestion's CPU work (decoding, local features, the model) at
/// <see cref="WorkPriorities.IngestionNice"/>: one per processor, or one per concurrent batch if
/// that is more.
/// </summary>
public sealed class IngestionLane : IDisposable
{
    public IngestionLane(WorkPriorities priorities, Microsoft.Extensions.Options.IOptions<IngestOptions> options)
    {
        ArgumentNullException.ThrowIfNull(priorities);
        ArgumentNullException.ThrowIfNull(options);
        Lane = new PriorityLane("ingest", Math.Max(Environment.ProcessorCount, options.Value.ConcurrentBatches), priorities.IngestionNice);
    }

    /// <summary>The lane itself.</summary>
    public PriorityLane Lane { get; }

    /// <inheritdoc cref="PriorityLane.RunAsync{T}(Func{T}, CancellationToken)"/>
    public Task<T> RunAsync<T>(Func<T> work, CancellationToken ct = default) => Lane.RunAsync(work, ct);

    public void Dispose() => Lane.Dispose();
}

/// <summary>
/// The threads that extract queries' local features for re-ranking, at
/// <see cref="WorkPriorities.QueryFeaturesNice"/>, one per processor.
/// </summary>
public sealed class QueryFeaturesLane : IDisposable
{
    public QueryFeaturesLane(WorkPriorities priorities)
    {
        ArgumentNullException.ThrowIfNull(priorities);
        Lane = new PriorityLane("query-features", Environment.ProcessorCount, priorities.QueryFeaturesNice);
    }

    /// <summary>The lane itself.</summary>
    public PriorityLane Lane { get; }

    /// <inheritdoc cref="PriorityLane.RunAsync{T}(Func{T}, CancellationToken)"/>
    public Task<T> RunAsync<T>(Func<T> work, CancellationToken ct = default) => Lane.RunAsync(work, ct);

    public void Dispose() => Lane.Dispose();
}
