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

    /// <summary>Level argument of <see cref="Nearest2Many"/>: the AVX-512 VNNI kernel, or AMX-INT8 on the shim's own threads.</summary>
    internal const int MatchVnni = 1, MatchAmx = 2;

    /// <summary>The match kernel <see cref="Nearest2Many"/> runs by default on this CPU: <see cref="MatchAmx"/>, <see cref="MatchVnni"/>, or 0 (neither).</summary>
    [LibraryImport(Library, EntryPoint = "is_sift_match_level")]
    internal static partial int MatchLevel();

    /// <summary>AMX worker threads alive: one per calling thread that matched with <see cref="MatchAmx"/> and has not ended.</summary>
    [LibraryImport(Library, EntryPoint = "is_sift_match_workers")]
    internal static partial int MatchWorkers();

    /// <summary>
    /// See sift_shim.c: the query's <paramref name="queryCount"/> descriptors against <paramref name="n"/> candidate
    /// sets (each at least 2 descriptors); for set i and query descriptor j, at i * queryCount + j, the squared
    /// distance to the set's nearest descriptor, its index and the second smallest distance. Returns 0 or a negative
    /// status (<see cref="BadArgument"/> also when <see cref="MatchLevel"/> is 0).
    /// </summary>
    [LibraryImport(Library, EntryPoint = "is_sift_nearest2_many")]
    internal static partial int Nearest2Many(byte* query, int queryCount, byte** candidates, int* counts, int n, int level, int* best, int* bestIndex, int* second);
}
