using System.ComponentModel.DataAnnotations;

namespace ImageSearch.LocalFeatures;

/// <summary>SIFT extraction and geometric verification. Section "LocalFeatures".</summary>
public sealed class LocalFeatureOptions
{
    public const string Section = "LocalFeatures";

    /// <summary>The image (or the query's box) is reduced so its longer side is at most this many pixels before SIFT.</summary>
    [Range(64, 4096)]
    public int MaxSide { get; set; } = 384;

    /// <summary>Features kept per image, the strongest first (136 bytes each when stored).</summary>
    [Range(16, 4096)]
    public int MaxFeatures { get; set; } = 300;

    /// <summary>VLFeat's DoG peak threshold (image values in [0, 1]).</summary>
    [Range(0.0, 1.0)]
    public double PeakThreshold { get; set; } = 0.005;

    /// <summary>VLFeat's edge threshold (ratio of principal curvatures).</summary>
    [Range(1.0, 100.0)]
    public double EdgeThreshold { get; set; } = 10;

    /// <summary>First octave of the scale space: 0 = the image as given, -1 = upsampled twice (finer, slower).</summary>
    [Range(-1, 3)]
    public int FirstOctave { get; set; }

    /// <summary>
    /// Runs VLFeat's own scale space and a descriptor for every orientation (3.5-4x slower with AVX-512) instead
    /// of the shim's SIMD scale space and descriptors for the kept features only. Both give the same
    /// features bit for bit; this is the reference for comparisons and benchmarks.
    /// </summary>
    public bool ReferenceSift { get; set; }

    /// <summary>
    /// Matches descriptors with the managed loop (one AVX2 distance per pair where the CPU has AVX2,
    /// the path before the native kernel) instead of the native AVX-512 VNNI search (about 9x faster,
    /// used where the CPU has it). Both give the same matches; this is the reference for comparisons
    /// and benchmarks.
    /// </summary>
    public bool ReferenceMatch { get; set; }

    /// <summary>
    /// Lets the native search use AMX-INT8 where the CPU and kernel offer it (Sapphire Rapids and later,
    /// Linux 5.16+), on worker threads of the shim's own (sift_shim.c says why), about 2.5x the AVX-512
    /// VNNI kernel. Off keeps matching on the VNNI kernel, on the calling threads. Both give the same matches.
    /// </summary>
    public bool Amx { get; set; } = true;

    /// <summary>Lowe's ratio test: a match is kept when its distance is below this fraction of the second nearest.</summary>
    [Range(0.1, 1.0)]
    public double Ratio { get; set; } = 0.8;

    /// <summary>A match is an inlier when the transform maps it within this fraction of the candidate's longer side.</summary>
    [Range(0.001, 0.5)]
    public double InlierTolerance { get; set; } = 0.02;

    /// <summary>A copy with every setting, for a comparison that changes one of them.</summary>
    public LocalFeatureOptions Copy() => (LocalFeatureOptions)MemberwiseClone();
}
