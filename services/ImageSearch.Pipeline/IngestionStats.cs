namespace ImageSearch.Pipeline;

/// <summary>
/// How long added images waited in the ingest queue before a worker took them, as the indexer sees
/// it (the worker stamps each embedding with the wait). Keeps the most recent waits in a fixed ring.
/// </summary>
public sealed class IngestionStats
{
    /// <summary>Header a worker sets on every ImageEmbedded: milliseconds its ImageAdded waited in the queue.</summary>
    public const string QueueWaitHeader = "ImageSearch-Queue-Wait-Ms";

    private const int Capacity = 10_000;
    private readonly double[] ring = new double[Capacity];
    private readonly Lock gate = new();
    private long count;

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
