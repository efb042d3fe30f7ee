using System.Collections.Concurrent;

namespace ImageSearch.Pipeline;

/// <summary>
/// Files announced to the bus and not yet settled (indexed, failed or removed), in this process.
/// Status reports it as "pending"; the CLI's index command waits for it to reach zero.
/// </summary>
public sealed class IngestionProgress
{
    /// <summary>
    /// Tracking is on only in a process that also settles files (hosts the indexer); a watcher on its
    /// own would never see them settle, and status reads queue depths instead.
    /// </summary>
    public bool Enabled { get; set; } = true;

    private readonly ConcurrentDictionary<string, byte> pending = new(StringComparer.Ordinal);
    private long settled;

    public int Pending => pending.Count;

    /// <summary>Files settled since start.</summary>
    public long Settled => Interlocked.Read(ref settled);

    public void Announced(string path)
    {
        if (Enabled)
        {
            pending.TryAdd(path, 0);
        }
    }

    public bool IsPending(string path) => pending.ContainsKey(path);

    public void Settle(string path)
    {
        if (pending.TryRemove(path, out _))
        {
            Interlocked.Increment(ref settled);
        }
    }

    /// <summary>Completes when nothing is pending (checked after every settle).</summary>
    public async Task WaitIdleAsync(CancellationToken cancellationToken)
    {
        while (!pending.IsEmpty)
        {
            await Task.Delay(20, cancellationToken).ConfigureAwait(false);
        }
    }
}
