using ImageSearch.Contracts;
using ImageSearch.Core;
using Microsoft.Extensions.Logging;

namespace ImageSearch.Pipeline;

/// <summary>
/// Applies ingestion results to the store and the catalog, hosted where the store lives. One
/// writer at a time, so the bookkeeping of "which paths hold which image" stays consistent.
/// Vectors are made durable before the catalog links a path to them: after a crash in between,
/// the next scan finds the path unlinked and announces it again, which is harmless. With a shared
/// store (Qdrant) the workers upsert the vectors themselves (<see cref="ImageEmbedded.VectorStored"/>)
/// and this only checks the point is there and links the path.
/// </summary>
public sealed partial class LibraryIndexer(
    IVectorStore store,
    ICatalog catalog,
    IEmbedder embedder,
    IngestionProgress progress,
    TimeProvider clock,
    ILogger<LibraryIndexer> logger)
{
    private readonly SemaphoreSlim gate = new(1, 1);
    private long failedSinceStart;

    public long FailedSinceStart => Interlocked.Read(ref failedSinceStart);

    /// <summary>
    /// Stores the vectors that travelled with the messages, then links each path to its image.
    /// Returns the messages whose vector the worker had stored (<see cref="ImageEmbedded.VectorStored"/>)
    /// but which are no longer in the store (the last other path holding that image was removed in
    /// between, which deletes the point): their paths are left unlinked and still pending, and the
    /// caller announces them again so a worker embeds them anew.
    /// </summary>
    public async Task<IReadOnlyList<ImageEmbedded>> ApplyEmbeddedAsync(IReadOnlyList<ImageEmbedded> items, CancellationToken ct)
    {
        await gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var accepted = new List<ImageEmbedded>(items.Count);
            foreach (var item in items)
            {
                // A stored vector was written to this store's collection, which belongs to the worker's
                // model; the key check is what catches a worker running another model.
                if (item.ModelKey != embedder.Model.Key || (!item.VectorStored && item.Vector.Length != store.Dimensions))
                {
                    // Never mix vectors of different models in one index.
                    var dimensions = item.VectorStored ? "" : $" ({item.Vector.Length}-d)";
                    await FailLockedAsync(new ImageIngestionFailed(item.Path,
                        $"Embedded by model {item.ModelKey}{dimensions} but this index holds {embedder.Model.Key} ({store.Dimensions}-d).",
                        item.SizeBytes, item.ModifiedAt), ct).ConfigureAwait(false);
                    continue;
                }

                accepted.Add(item);
            }

            var records = new Dictionary<ImageId, VectorRecord>();
            var present = new HashSet<ImageId>();
            var lost = new HashSet<ImageId>();
            var linkedHere = accepted.ToLookup(i => ImageId.Parse(i.ImageId), i => i.Path);
            foreach (var item in accepted)
            {
                var id = ImageId.Parse(item.ImageId);
                if (records.ContainsKey(id) || (item.VectorStored && present.Contains(id)))
                {
                    continue;
                }

                var existing = await store.GetAsync(id, ct).ConfigureAwait(false);
                if (item.VectorStored && existing is null)
                {
                    lost.Add(id);
                    continue;
                }

                if (existing is not null)
                {
                    present.Add(id);
                }

                if (existing is not null && await catalog.FindPathAsync(id, ct).ConfigureAwait(false) is not null)
                {
                    continue; // Already stored and reachable through another path.
                }

                if (item.VectorStored && linkedHere[id].Contains(existing!.Payload.Path, StringComparer.Ordinal))
                {
                    continue; // A worker stored it for a path this batch links (copies: the last one written wins).
                }

                // Not yet stored, or stored but reachable through no path (a crash before the link, or a
                // worker wrote it for a path that is gone): (re)point the payload at this path.
                var payload = new ImagePayload(item.Path, item.SizeBytes, item.Width, item.Height, item.ContentHash,
                    existing?.Payload.AddedAt ?? clock.GetUtcNow());
                records[id] = new VectorRecord(id, item.VectorStored ? existing!.Vector : item.Vector, payload, item.VectorStored ? null : item.LocalFeatures);
            }

            if (records.Count > 0)
            {
                await store.UpsertAsync(records.Values.ToList(), ct).ConfigureAwait(false);
            }

            var again = new List<ImageEmbedded>();
            foreach (var item in accepted)
            {
                var id = ImageId.Parse(item.ImageId);
                if (item.VectorStored && lost.Contains(id))
                {
                    LogVectorLost(logger, item.Path, item.ImageId);
                    again.Add(item);
                    continue;
                }

                var previous = await catalog.SetIndexedAsync(item.Path, id, item.SizeBytes, item.ModifiedAt, ct).ConfigureAwait(false);
                if (previous is { } p && p != id)
                {
                    await ReleaseAsync(p, item.Path, ct).ConfigureAwait(false);
                }

                progress.Settle(item.Path);
            }

            return again;
        }
        finally
        {
            gate.Release();
        }
    }

    public async Task ApplyFailedAsync(ImageIngestionFailed failure, CancellationToken ct)
    {
        await gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            await FailLockedAsync(failure, ct).ConfigureAwait(false);
        }
        finally
        {
            gate.Release();
        }
    }

    public async Task ApplyRemovedAsync(string path, CancellationToken ct)
    {
        await gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            if (await catalog.RemoveAsync(path, ct).ConfigureAwait(false) is { } previous)
            {
                await ReleaseAsync(previous, path, ct).ConfigureAwait(false);
            }

            progress.Settle(path);
        }
        finally
        {
            gate.Release();
        }
    }

    private async Task FailLockedAsync(ImageIngestionFailed failure, CancellationToken ct)
    {
        var previous = await catalog.SetFailedAsync(failure.Path, failure.Reason, failure.SizeBytes, failure.ModifiedAt, ct).ConfigureAwait(false);
        if (previous is { } p)
        {
            await ReleaseAsync(p, failure.Path, ct).ConfigureAwait(false);
        }

        Interlocked.Increment(ref failedSinceStart);
        progress.Settle(failure.Path);
    }

    /// <summary>A path stopped holding <paramref name="id"/>: delete the point when no path holds it any more, else repoint its payload.</summary>
    private async Task ReleaseAsync(ImageId id, string releasedPath, CancellationToken ct)
    {
        var other = await catalog.FindPathAsync(id, ct).ConfigureAwait(false);
        if (other is null)
        {
            await store.DeleteAsync([id], ct).ConfigureAwait(false);
            LogDeleted(logger, id.Value, releasedPath);
            return;
        }

        if (await store.GetAsync(id, ct).ConfigureAwait(false) is { } record && record.Payload.Path == releasedPath)
        {
            await store.UpsertAsync([record with { Payload = record.Payload with { Path = other } }], ct).ConfigureAwait(false);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "The stored vector of {Path} ({ImageId}) was deleted before the path was linked; announcing the file again")]
    private static partial void LogVectorLost(ILogger logger, string path, string imageId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Deleted image {ImageId}: its last file {Path} is gone")]
    private static partial void LogDeleted(ILogger logger, string imageId, string path);
}
