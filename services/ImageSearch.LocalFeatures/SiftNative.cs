using System.Runtime.InteropServices;

namespace ImageSearch.LocalFeatures;

/// <summary>P/Invoke declarations for native/sift_shim.c (libsift_shim.so, copied next to the assemblies).</summary>
internal static unsafe partial class SiftNative
{
    private const string Library = "sift_shim";

    /// <summary>Returned when an argument is out of range.</summary>
    internal const int BadArgument = -1;

    /// <summary>Returned when VLFeat could not allocate its scale space.</summary>
    internal const int OutOfMemory = -2;

    /// <summary>Kernel argument: VLFeat's own pipeline (process_first/next_octave, a descriptor for every orientation), the reference.</summary>
    internal const int ReferenceKernel = -2;

    /// <summary>Kernel argument: the fast path with the best SIMD kernel this CPU runs.</summary>
    internal const int DefaultKernel = -1;

    /// <summary>Kernel levels of the fast path's smoothing: a level above <see cref="SimdLevel"/> falls back to it.</summary>
    internal const int ScalarKernel = 0, Avx2Kernel = 1, Avx512Kernel = 2;

    [LibraryImport(Library, EntryPoint = "is_sift_version")]
    internal static partial int Version();

    /// <summary>The smoothing kernel the fast path uses by default on this CPU (0 scalar, 1 AVX2, 2 AVX-512).</summary>
    [LibraryImport(Library, EntryPoint = "is_sift_simd_level")]
    internal static partial int SimdLevel();

    /// <summary>See sift_shim.c: writes up to <paramref name="maxFeatures"/> frames and descriptors; returns the count or a negative status.</summary>
    [LibraryImport(Library, EntryPoint = "is_sift_extract")]
    internal static partial int Extract(float* image, int width, int height, int firstOctave, double peakThreshold, double edgeThreshold,
        int maxFeatures, int kernel, float* frames, byte* descriptors);

    /// <summary>1 when <see cref="Nearest2"/> runs on this CPU (AVX-512 F, BW and VNNI), else 0.</summary>
    [LibraryImport(Library, EntryPoint = "is_sift_match_supported")]
    internal static partial int MatchSupported();

    /// <summary>
    /// See sift_shim.c: for each of <paramref name="queryCount"/> query descriptors, the squared distance to the
    /// nearest of <paramref name="candidateCount"/> (at least 2) candidate descriptors, its index and the second
    /// smallest distance. Returns 0 or a negative status (<see cref="BadArgument"/> also when the CPU cannot run it).
    /// </summary>
    [LibraryImport(Library, EntryPoint = "is_sift_nearest2")]
    internal static partial int Nearest2(byte* query, int queryCount, byte* candidates, int candidateCount, int* best, int* bestIndex, int* second);
}
