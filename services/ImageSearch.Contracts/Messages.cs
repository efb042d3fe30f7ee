namespace ImageSearch.Contracts;

// Paths are relative to the library root (the watched folder or bucket), with '/' separators.

/// <summary>Event: a file appeared or changed in the library.</summary>
public sealed record ImageAdded(string Path, long SizeBytes, DateTimeOffset ModifiedAt);

/// <summary>Event: a file disappeared from the library.</summary>
public sealed record ImageRemoved(string Path);

/// <summary>Event: a worker computed the embedding of a file; the indexer stores it.</summary>
public sealed record ImageEmbedded(
    string Path,
    string ImageId,
    float[] Vector,
    string ModelKey,
    long SizeBytes,
    int Width,
    int Height,
    string ContentHash,
    DateTimeOffset ModifiedAt);

/// <summary>Event: a file could not be ingested for a reason retrying cannot fix.</summary>
public sealed record ImageIngestionFailed(string Path, string Reason, long SizeBytes, DateTimeOffset ModifiedAt);
