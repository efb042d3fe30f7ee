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

    [LibraryImport(Library, EntryPoint = "is_sift_version")]
    internal static partial int Version();

    /// <summary>See sift_shim.c: writes up to <paramref name="maxFeatures"/> frames and descriptors; returns the count or a negative status.</summary>
    [LibraryImport(Library, EntryPoint = "is_sift_extract")]
    internal static partial int Extract(float* image, int width, int height, int firstOctave, double peakThreshold, double edgeThreshold,
        int maxFeatures, float* frames, byte* descriptors);
}
