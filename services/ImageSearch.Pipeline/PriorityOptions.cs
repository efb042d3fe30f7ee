using System.ComponentModel.DataAnnotations;
using ImageSearch.Core;

namespace ImageSearch.Pipeline;

/// <summary>
/// How much the background kinds of work give way to requests, in Linux nice levels below the
/// process's own priority (0 = the same as requests; 19 = the lowest). Section "Priority".
/// </summary>
/// <remarks>
/// With equal priorities, photos being ingested take half the cores from a search: on two cores one
/// client's re-ranked searches went from ~30-45 ms p50 to ~57-65 ms while the gateway ingested. By
/// default ingestion (decoding, local features and the model for new images, on threads of its own)
/// runs at the lowest level and, like a desktop indexer, gets only the cores that searches leave
/// idle; searches then stay within a few ms of an idle server (docs/BENCHMARKS.md, "Priorities").
/// Lowering the query model as well (<see cref="QueryModel"/>) lets requests whose embedding is done
/// finish before the next model run: it shrinks the time after the embedding at 4 clients, but it
/// did not lower their end-to-end latency, and it slowed a lone search (the model's two threads wait
/// for each other when one is preempted), so it is off by default. The levels order the process's
/// own threads; other processes compete through their CPU groups (systemd services, containers).
/// </remarks>
public sealed class PriorityOptions
{
    public const string Section = "Priority";

    /// <summary>Nice levels below the process for the query model's threads. Default 0 (see the remarks).</summary>
    [Range(0, ThreadNice.Lowest)]
    public int QueryModel { get; set; }

    /// <summary>Nice levels below the process for ingestion's decode, local features and model. Default 19.</summary>
    [Range(0, ThreadNice.Lowest)]
    public int Ingestion { get; set; } = ThreadNice.Lowest;

    /// <summary>The nice values these levels give in this process.</summary>
    public WorkPriorities Resolve() => WorkPriorities.Below(QueryModel, Ingestion);
}

/// <summary>
/// The threads that do ingestion's CPU work (decoding, local features, the model) at
/// <see cref="WorkPriorities.IngestionNice"/>: as many as ingestion can have busy at once
/// (<see cref="IngestOptions.ConcurrentBatches"/> batches, each decoding on
/// <see cref="IngestOptions.DecodeThreads"/> threads and then embedding on one of them), so the lane
/// changes their priority, not their concurrency.
/// </summary>
public sealed class IngestionLane : IDisposable
{
    public IngestionLane(WorkPriorities priorities, Microsoft.Extensions.Options.IOptions<IngestOptions> options)
    {
        ArgumentNullException.ThrowIfNull(priorities);
        ArgumentNullException.ThrowIfNull(options);
        var o = options.Value;
        var decodeThreads = o.DecodeThreads > 0 ? o.DecodeThreads : Environment.ProcessorCount;
        Lane = new PriorityLane("ingest", o.ConcurrentBatches * decodeThreads, priorities.IngestionNice);
    }

    /// <summary>The lane itself.</summary>
    public PriorityLane Lane { get; }

    /// <inheritdoc cref="PriorityLane.RunAsync{T}(Func{T}, CancellationToken)"/>
    public Task<T> RunAsync<T>(Func<T> work, CancellationToken ct = default) => Lane.RunAsync(work, ct);

    public void Dispose() => Lane.Dispose();
}

