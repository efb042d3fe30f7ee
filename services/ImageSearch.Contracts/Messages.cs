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

/// <summary>Request: a page of the files the index knows, in path order after <see cref="After"/> (null: from the start).</summary>
public sealed record ListLibraryFiles(string? After, int Limit);

/// <summary>A file as the index last saw it (size and modification time decide whether it changed).</summary>
public sealed record KnownFile(string Path, long SizeBytes, DateTimeOffset ModifiedAt);

/// <summary>Response to <see cref="ListLibraryFiles"/>; <see cref="More"/> when another page follows.</summary>
public sealed record LibraryFilesPage(IReadOnlyList<KnownFile> Files, bool More);
