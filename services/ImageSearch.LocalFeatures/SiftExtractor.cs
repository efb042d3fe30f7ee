using ImageSearch.Core;
using Microsoft.Extensions.Options;

namespace ImageSearch.LocalFeatures;

/// <summary>
/// SIFT (VLFeat) on the decoded image, reduced to <see cref="LocalFeatureOptions.MaxSide"/> and
/// converted to grey; keeps the <see cref="LocalFeatureOptions.MaxFeatures"/> strongest features.
/// The native shim builds the scale space with its own SIMD smoothing and computes descriptors only
/// for the features kept; the result equals VLFeat's own pipeline bit for bit
/// (<see cref="LocalFeatureOptions.ReferenceSift"/> runs that one instead).
/// </summary>
public sealed class SiftExtractor : ILocalFeatureExtractor
{
    private readonly IImageDecoder _decoder;
    private readonly LocalFeatureOptions _options;

    public SiftExtractor(IImageDecoder decoder, IOptions<LocalFeatureOptions> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _decoder = decoder;
        _options = options.Value;
        EnsureLoaded();
    }

    /// <summary>Fails with a clear message at start when the native shim or VLFeat cannot be loaded.</summary>
    public static void EnsureLoaded()
    {
        try
        {
            if (SiftNative.Version() != 4)
            {
                throw new InvalidOperationException("libsift_shim.so is of another version than this build; rebuild (./imagesearch setup).");
            }
        }
        catch (DllNotFoundException ex)
        {
            throw new InvalidOperationException(
                "SIFT needs libsift_shim.so (built by ./imagesearch setup) and VLFeat (Debian: apt-get install libvlfeat1): " + ex.Message, ex);
        }
    }

    /// <inheritdoc />
    public LocalFeatureSet Extract(ReadOnlyMemory<byte> data, BoundingBox? region = null, DecodeLimits? limits = null) =>
        Extract(_decoder.DecodeFit(data, _options.MaxSide, limits, region));

    /// <inheritdoc />
    public int MaxSide => _options.MaxSide;

    /// <inheritdoc />
    public LocalFeatureSet Extract(RgbImage image) =>
        Extract(image, _options.ReferenceSift ? SiftNative.ReferenceKernel : SiftNative.DefaultKernel);

    /// <summary>The smoothing kernel the fast path uses on this CPU (0 scalar, 1 AVX2, 2 AVX-512).</summary>
    public static int SimdLevel => SiftNative.SimdLevel();

    /// <summary>Features through one native path: a <see cref="SiftNative"/> kernel constant (tests compare them).</summary>
    internal LocalFeatureSet Extract(RgbImage image, int kernel)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (image.Width < 16 || image.Height < 16)
        {
            return LocalFeatureSet.Empty(image.Width, image.Height);
        }

        var grey = ToGrey(image);
        var max = _options.MaxFeatures;
        var frames = new float[4 * max];
        var descriptors = new byte[LocalFeatureSet.DescriptorLength * max];
        int n;
        unsafe
        {
            fixed (float* g = grey)
            fixed (float* f = frames)
            fixed (byte* d = descriptors)
            {
                n = SiftNative.Extract(g, image.Width, image.Height, _options.FirstOctave, _options.PeakThreshold, _options.EdgeThreshold, max, kernel, f, d);
            }
        }

        return n switch
        {
            SiftNative.OutOfMemory => throw new InsufficientMemoryException($"SIFT could not allocate its scale space for a {image.Width}x{image.Height} image."),
            < 0 => throw new ArgumentException($"SIFT refused a {image.Width}x{image.Height} image (status {n})."),
            _ => new LocalFeatureSet(image.Width, image.Height, frames[..(4 * n)], descriptors[..(LocalFeatureSet.DescriptorLength * n)]),
        };
    }

    /// <summary>Rec. 601 luma in [0, 1].</summary>
    internal static float[] ToGrey(RgbImage image)
    {
        var pixels = image.Pixels;
        var grey = new float[image.Width * image.Height];
        for (int i = 0, p = 0; i < grey.Length; i++, p += 3)
        {
            grey[i] = ((0.299f * pixels[p]) + (0.587f * pixels[p + 1]) + (0.114f * pixels[p + 2])) * (1f / 255f);
        }

        return grey;
    }
}
