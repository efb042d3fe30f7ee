namespace ImageSearch.VectorStore;

/// <summary>Status codes of the native shim (values match native/hnsw_shim.cpp).</summary>
public enum HnswStatus
{
    Ok = 0,
    InvalidArgument = 1,

    /// <summary>The label is not in the index.</summary>
    NotFound = 2,

    /// <summary>The index is full; resize it first.</summary>
    Capacity = 3,

    /// <summary>Add without replace on a label that exists.</summary>
    AlreadyExists = 4,
    AlreadyDeleted = 5,
    NotDeleted = 6,

    /// <summary>A file could not be read or written (or was written incompletely).</summary>
    Io = 7,

    /// <summary>A snapshot file is damaged or was built for another dimension.</summary>
    Corrupt = 8,
    OutOfMemory = 9,

    /// <summary>hnswlib threw something else; the graph may be inconsistent.</summary>
    Internal = 10,
}

/// <summary>A native HNSW call failed; <see cref="Status"/> tells why.</summary>
public sealed class HnswException : Exception
{
    public HnswException(HnswStatus status, string message)
        : base(string.IsNullOrEmpty(message) ? $"hnsw: {status}" : $"hnsw: {message}") => Status = status;

    public HnswException()
    {
    }

    public HnswException(string message) : base(message)
    {
    }

    public HnswException(string message, Exception innerException) : base(message, innerException)
    {
    }

    public HnswStatus Status { get; } = HnswStatus.Internal;
}
