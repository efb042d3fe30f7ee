using System.Runtime.InteropServices;

namespace ImageSearch.VectorStore;

/// <summary>
/// P/Invoke declarations for native/hnsw_shim.cpp (libhnsw_shim.so, copied next to the assemblies).
/// Every call that can fail returns an <see cref="HnswStatus"/> and leaves a message readable
/// through <see cref="LastError"/> on the same thread; no native exception crosses the boundary.
/// </summary>
internal static unsafe partial class HnswNative
{
    private const string Library = "hnsw_shim";

    [LibraryImport(Library, EntryPoint = "hnsw_last_error")]
    private static partial byte* LastErrorPtr();

    [LibraryImport(Library, EntryPoint = "hnsw_create")]
    internal static partial HnswStatus Create(int dim, ulong maxElements, ulong m, ulong efConstruction, ulong seed, int kernel, HnswVectorFormat format, out HnswIndexHandle index);

    [LibraryImport(Library, EntryPoint = "hnsw_load", StringMarshalling = StringMarshalling.Utf8)]
    internal static partial HnswStatus Load(string path, int dim, ulong maxElements, ulong seed, HnswVectorFormat format, out HnswIndexHandle index);

    [LibraryImport(Library, EntryPoint = "hnsw_save", StringMarshalling = StringMarshalling.Utf8)]
    internal static partial HnswStatus Save(HnswIndexHandle index, string path);

    [LibraryImport(Library, EntryPoint = "hnsw_add")]
    internal static partial HnswStatus Add(HnswIndexHandle index, ulong label, float* vector, int replace);

    [LibraryImport(Library, EntryPoint = "hnsw_add_batch")]
    internal static partial HnswStatus AddBatch(HnswIndexHandle index, ulong* labels, float* vectors, ulong count, int threads);

    [LibraryImport(Library, EntryPoint = "hnsw_get_vector")]
    internal static partial HnswStatus GetVector(HnswIndexHandle index, ulong label, float* vector);

    [LibraryImport(Library, EntryPoint = "hnsw_same_vector")]
    internal static partial HnswStatus SameVector(HnswIndexHandle index, ulong label, float* vector, out int same);

    [LibraryImport(Library, EntryPoint = "hnsw_mark_deleted")]
    internal static partial HnswStatus MarkDeleted(HnswIndexHandle index, ulong label);

    [LibraryImport(Library, EntryPoint = "hnsw_unmark_deleted")]
    internal static partial HnswStatus UnmarkDeleted(HnswIndexHandle index, ulong label);

    [LibraryImport(Library, EntryPoint = "hnsw_label_state")]
    internal static partial int LabelState(HnswIndexHandle index, ulong label);

    [LibraryImport(Library, EntryPoint = "hnsw_search")]
    internal static partial HnswStatus Search(HnswIndexHandle index, float* query, ulong k, ulong ef, ulong* labels, float* distances, out ulong count);

    [LibraryImport(Library, EntryPoint = "hnsw_count")]
    internal static partial ulong Count(HnswIndexHandle index);

    [LibraryImport(Library, EntryPoint = "hnsw_deleted_count")]
    internal static partial ulong DeletedCount(HnswIndexHandle index);

    [LibraryImport(Library, EntryPoint = "hnsw_capacity")]
    internal static partial ulong Capacity(HnswIndexHandle index);

    [LibraryImport(Library, EntryPoint = "hnsw_resize")]
    internal static partial HnswStatus Resize(HnswIndexHandle index, ulong maxElements);

    [LibraryImport(Library, EntryPoint = "hnsw_free")]
    internal static partial void Free(IntPtr index);

    [LibraryImport(Library, EntryPoint = "hnsw_fsync_path", StringMarshalling = StringMarshalling.Utf8)]
    internal static partial HnswStatus FsyncPath(string path);

    [LibraryImport(Library, EntryPoint = "hnsw_simd_level")]
    internal static partial int SimdLevel();

    [LibraryImport(Library, EntryPoint = "hnsw_best_kernel")]
    internal static partial int BestKernel();

    [LibraryImport(Library, EntryPoint = "hnsw_index_kernel")]
    internal static partial int IndexKernel(HnswIndexHandle index);

    [LibraryImport(Library, EntryPoint = "hnsw_distance")]
    internal static partial HnswStatus Distance(int kernel, HnswVectorFormat format, float* a, float* b, ulong dim, out float distance);

    /// <summary>Message of the last failed shim call on this thread.</summary>
    internal static string LastError() => Marshal.PtrToStringUTF8((IntPtr)LastErrorPtr()) ?? "";

    /// <summary>Throws <see cref="HnswException"/> for a failed call (reads the thread's message, so call it right after).</summary>
    internal static void Check(HnswStatus status)
    {
        if (status != HnswStatus.Ok)
        {
            throw new HnswException(status, LastError());
        }
    }
}

/// <summary>Owns a native hnsw_index*; released exactly once, never while a call is using it.</summary>
internal sealed class HnswIndexHandle : SafeHandle
{
    public HnswIndexHandle()
        : base(IntPtr.Zero, ownsHandle: true)
    {
    }

    public override bool IsInvalid => handle == IntPtr.Zero;

    protected override bool ReleaseHandle()
    {
        HnswNative.Free(handle);
        return true;
    }
}
