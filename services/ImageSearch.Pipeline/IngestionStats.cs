namespace ImageSearch.Pipeline;

/// <summary>
/// How long added images waited in the ingest queue before a worker took them, as the indexer sees
/// it (the worker stamps each embedding with the wait), and when the indexer last took in images.
/// Keeps the most recent waits in a fixed ring.
/// </summary>
public sealed class IngestionStats(TimeProvider clock)
{
    /// <summary>Header a worker sets on every ImageEmbedded: milliseconds its ImageAdded waited in the queue.</summary>
    public const string QueueWaitHeader = "ImageSearch-Queue-Wait-Ms";

    private const int Capacity = 10_000;
    private readonly double[] ring = new double[Capacity];
    private readonly Lock gate = new();
    private long count;
    private long lastIndexedTicks;

    /// <summary>
    /// When this process last applied embeddings to its index (stored, or linked files to stored
    /// images); null when it has not since it started. Shows whether ingestion is moving, and when
    /// a drop of files was done without polling at the rate they are indexed.
    /// </summary>
    public DateTimeOffset? LastIndexedAt => Interlocked.Read(ref lastIndexedTicks) is > 0 and var t ? new DateTimeOffset(t, TimeSpan.Zero) : null;

    public void RecordIndexed() => Interlocked.Exchange(ref lastIndexedTicks, clock.GetUtcNow().UtcTicks);

    public void RecordQueueWait(double milliseconds)
    {
        lock (gate)
        {
            ring[count++ % Capacity] = milliseconds;
        }
    }

    /// <summary>The p-th percentile (0..1) of the recorded waits, or null when none was recorded.</summary>
    public double? QueueWaitPercentile(double p)
    {
        double[] values;
        lock (gate)
        {
            values = ring[..(int)Math.Min(count, Capacity)];
        }

        if (values.Length == 0)
        {
            return null;
        }

        Array.Sort(values);
        return values[Math.Clamp((int)Math.Ceiling(p * values.Length) - 1, 0, values.Length - 1)];
    }
}
