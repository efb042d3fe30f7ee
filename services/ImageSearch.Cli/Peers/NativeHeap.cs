using System.Runtime.InteropServices;

namespace ImageSearch.Cli.Peers;

/// <summary>
/// Bytes in use on the native heap (glibc <c>mallinfo2</c>: every arena plus mmapped blocks). The
/// HNSW graph is allocated with malloc/new inside the native shim, as FAISS and hnswlib allocate
/// theirs, so the growth across a build measures each index the same way in every process; the
/// .NET heap is not malloc'd and is measured separately (<see cref="GC.GetTotalMemory(bool)"/>).
/// </summary>
internal static partial class NativeHeap
{
    public static long InUse()
    {
        if (!OperatingSystem.IsLinux())
        {
            return 0;
        }

        var m = MallInfo2();
        return (long)(m.Uordblks + m.Hblkhd);
    }

    /// <summary>Managed plus native heap in use, after a full collection.</summary>
    public static long Total() => GC.GetTotalMemory(forceFullCollection: true) + InUse();

    [LibraryImport("libc", EntryPoint = "mallinfo2")]
    private static partial MallInfo MallInfo2();

    [StructLayout(LayoutKind.Sequential)]
    private struct MallInfo
    {
        public nuint Arena;
        public nuint Ordblks;
        public nuint Smblks;
        public nuint Hblks;
        public nuint Hblkhd;
        public nuint Usmblks;
        public nuint Fsmblks;
        public nuint Uordblks;
        public nuint Fordblks;
        public nuint Keepcost;
    }
}
