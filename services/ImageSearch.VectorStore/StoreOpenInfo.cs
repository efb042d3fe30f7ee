namespace ImageSearch.VectorStore;

/// <summary>How an <see cref="EmbeddedVectorStore"/> got its HNSW graph when it opened.</summary>
/// <param name="Points">Live points loaded from the database.</param>
/// <param name="SnapshotSeq">Seq of the snapshot loaded; 0 when the graph was rebuilt.</param>
/// <param name="ReplayedUpserts">Points newer than the snapshot, inserted into it.</param>
/// <param name="ReplayedDeletes">Deletes newer than the snapshot, applied to it.</param>
/// <param name="RebuildReason">Why the graph was rebuilt from the database; null when a snapshot was used.</param>
/// <param name="Elapsed">Time taken to open.</param>
public sealed record StoreOpenInfo(long Points, long SnapshotSeq, int ReplayedUpserts, int ReplayedDeletes, string? RebuildReason, TimeSpan Elapsed)
{
    public bool Rebuilt => RebuildReason is not null;
}
