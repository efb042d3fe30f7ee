using System.Text.Json.Serialization;

namespace ImageSearch.Contracts;

// Paths are relative to the library root (the watched folder or bucket), with '/' separators.

/// <summary>Event: a file appeared or changed in the library.</summary>
public sealed record ImageAdded(string Path, long SizeBytes, DateTimeOffset ModifiedAt);

/// <summary>Event: a file disappeared from the library.</summary>
public sealed record ImageRemoved(string Path);

/// <summary>
/// Event: a worker computed the embedding of a file; the indexer links the path to the image and,
/// unless <see cref="VectorStored"/>, stores the vector.
/// </summary>
/// <param name="Path">The file, relative to the library root.</param>
/// <param name="ImageId">The point id: the first 128 bits of the file's SHA-256, hex.</param>
/// <param name="Vector">
/// The embedding; empty when <see cref="VectorStored"/>. In JSON, base64 of its little-endian floats
/// (<see cref="Float32Base64Converter"/>, which also reads the older array of numbers).
/// </param>
/// <param name="ModelKey">The embedding model's key (name, version, calibration).</param>
/// <param name="SizeBytes">File size.</param>
/// <param name="Width">Oriented width in pixels.</param>
/// <param name="Height">Oriented height in pixels.</param>
/// <param name="ContentHash">Full SHA-256 of the file, lowercase hex.</param>
/// <param name="ModifiedAt">The file's modification time when it was read.</param>
/// <param name="VectorStored">
/// The worker already upserted the point (vector and payload) durably into the shared store (Qdrant),
/// so the message carries no vector. False (the default, and what messages without the field read as)
/// when the store is embedded in the indexer's process and the vector travels here.
/// </param>
/// <param name="LocalFeatures">
/// The image's local features for re-ranking (LocalFeatureSet.ToBytes, base64 in JSON), travelling
/// with the vector when the indexer applies it; null when the worker stored them itself, or when
/// local features are off.
/// </param>
public sealed record ImageEmbedded(
    string Path,
    string ImageId,
    [property: JsonConverter(typeof(Float32Base64Converter))] float[] Vector,
    string ModelKey,
    long SizeBytes,
    int Width,
    int Height,
    string ContentHash,
    DateTimeOffset ModifiedAt,
    bool VectorStored = false,
    byte[]? LocalFeatures = null);

/// <summary>Event: a file could not be ingested for a reason retrying cannot fix.</summary>
public sealed record ImageIngestionFailed(string Path, string Reason, long SizeBytes, DateTimeOffset ModifiedAt);

/// <summary>Request: a page of the files the index knows, in path order after <see cref="After"/> (null: from the start).</summary>
public sealed record ListLibraryFiles(string? After, int Limit);

/// <summary>A file as the index last saw it (size and modification time decide whether it changed).</summary>
public sealed record KnownFile(string Path, long SizeBytes, DateTimeOffset ModifiedAt);

/// <summary>Response to <see cref="ListLibraryFiles"/>; <see cref="More"/> when another page follows.</summary>
public sealed record LibraryFilesPage(IReadOnlyList<KnownFile> Files, bool More);
