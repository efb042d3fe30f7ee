using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace ImageSearch.Core;

/// <summary>
/// Local features of one image (SIFT keypoints and 8-bit descriptors), in the pixel coordinates of
/// the reduced image they were extracted from (<see cref="Width"/> x <see cref="Height"/>).
/// Stored with each indexed image so that re-ranking needs no re-decoding.
/// </summary>
/// <param name="Width">Width of the image the features were extracted from.</param>
/// <param name="Height">Height of that image.</param>
/// <param name="Frames">Four floats per feature: x, y, scale (sigma, pixels), orientation (radians).</param>
/// <param name="Descriptors">128 bytes per feature.</param>
public sealed record LocalFeatureSet(int Width, int Height, float[] Frames, byte[] Descriptors)
{
    /// <summary>Bytes per descriptor.</summary>
    public const int DescriptorLength = 128;

    private const uint Magic = 0x3146_4C49; // "ILF1" little-endian: ImageSearch local features, format 1.
    private const int HeaderBytes = 12;
    private const int FrameBytes = 8; // four half-precision floats

    public int Count => Frames.Length / 4;

    /// <summary>No features (an image too small or too flat to have any).</summary>
    public static LocalFeatureSet Empty(int width, int height) => new(width, height, [], []);

    /// <summary>
    /// The compact form: a 12-byte header, then per feature four half-precision floats (x, y, scale,
    /// angle: under 0.25 px of error on the reduced image) and the 128 descriptor bytes; 136 bytes a feature.
    /// </summary>
    public byte[] ToBytes()
    {
        var n = Count;
        if (Descriptors.Length != n * DescriptorLength)
        {
            throw new InvalidOperationException($"{n} frames but {Descriptors.Length} descriptor bytes.");
        }

        var bytes = new byte[HeaderBytes + (n * (FrameBytes + DescriptorLength))];
        var span = bytes.AsSpan();
        BinaryPrimitives.WriteUInt32LittleEndian(span, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(span[4..], checked((ushort)Width));
        BinaryPrimitives.WriteUInt16LittleEndian(span[6..], checked((ushort)Height));
        BinaryPrimitives.WriteInt32LittleEndian(span[8..], n);
        var frames = span[HeaderBytes..];
        for (var i = 0; i < Frames.Length; i++)
        {
            BinaryPrimitives.WriteHalfLittleEndian(frames[(2 * i)..], (Half)Frames[i]);
        }

        Descriptors.CopyTo(span[(HeaderBytes + (n * FrameBytes))..]);
        return bytes;
    }

    /// <summary>Reads <see cref="ToBytes"/>'s form. Throws <see cref="FormatException"/> when it is not one.</summary>
    public static LocalFeatureSet FromBytes(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < HeaderBytes || BinaryPrimitives.ReadUInt32LittleEndian(bytes) != Magic)
        {
            throw new FormatException("Not a local feature set (bad header).");
        }

        int width = BinaryPrimitives.ReadUInt16LittleEndian(bytes[4..]);
        int height = BinaryPrimitives.ReadUInt16LittleEndian(bytes[6..]);
        var n = BinaryPrimitives.ReadInt32LittleEndian(bytes[8..]);
        if (n < 0 || (long)HeaderBytes + ((long)n * (FrameBytes + DescriptorLength)) != bytes.Length)
        {
            throw new FormatException($"Local feature set of {bytes.Length} bytes cannot hold {n} features.");
        }

        // Re-ranking parses a hundred of these per query: the arrays are filled whole, so they are
        // not zeroed first, and the halves are read in place on little-endian machines.
        var frames = GC.AllocateUninitializedArray<float>(4 * n);
        var source = bytes.Slice(HeaderBytes, n * FrameBytes);
        if (BitConverter.IsLittleEndian)
        {
            var halves = MemoryMarshal.Cast<byte, Half>(source);
            for (var i = 0; i < frames.Length; i++)
            {
                frames[i] = (float)halves[i];
            }
        }
        else
        {
            for (var i = 0; i < frames.Length; i++)
            {
                frames[i] = (float)BinaryPrimitives.ReadHalfLittleEndian(source[(2 * i)..]);
            }
        }

        var descriptors = GC.AllocateUninitializedArray<byte>(n * DescriptorLength);
        bytes[(HeaderBytes + (n * FrameBytes))..].CopyTo(descriptors);
        return new LocalFeatureSet(width, height, frames, descriptors);
    }
}

/// <summary>Computes local features of untrusted image bytes. Implementations are thread-safe.</summary>
public interface ILocalFeatureExtractor
{
    /// <summary>
    /// Decodes (orientation applied), crops to <paramref name="region"/> when given (original-image
    /// pixels) and extracts features. Throws <see cref="InvalidImageException"/> for bad input.
    /// </summary>
    LocalFeatureSet Extract(ReadOnlyMemory<byte> data, BoundingBox? region = null, DecodeLimits? limits = null);

    /// <summary>The longer side, in pixels, that images are reduced to before extraction (<see cref="IImageDecoder.DecodeFit"/>'s maxSide).</summary>
    int MaxSide { get; }

    /// <summary>Features of an image already decoded and reduced to within <see cref="MaxSide"/> (the same features <see cref="Extract(ReadOnlyMemory{byte}, BoundingBox?, DecodeLimits?)"/> gives for its bytes).</summary>
    LocalFeatureSet Extract(RgbImage image);
}

/// <summary>Geometric verification of a candidate against a query: how many feature matches agree on one transform.</summary>
public interface IGeometricVerifier
{
    /// <summary>The number of matches consistent with the best transform (0 when none is found).</summary>
    int CountInliers(LocalFeatureSet query, LocalFeatureSet candidate);

    /// <summary><see cref="CountInliers(LocalFeatureSet, LocalFeatureSet)"/> for each candidate, in their order (one call, so an implementation can batch).</summary>
    int[] CountInliers(LocalFeatureSet query, IReadOnlyList<LocalFeatureSet> candidates);
}
