using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ImageSearch.Embedding;

/// <summary>
/// Converts packed 8-bit RGB (HWC) pixels into the planar float layout (CHW) the models take,
/// values 0..255 unscaled (the exported graphs scale internally).
/// </summary>
internal static class NchwPacker
{
    // pshufb masks that pick channel c of 16 consecutive pixels out of each of the three 16-byte
    // blocks holding them (bytes 3k + c); 0x80 makes pshufb write zero, so OR-ing the three picks
    // gives the 16 channel values in pixel order.
    private static readonly Vector128<byte>[] ShuffleMasks = BuildShuffleMasks();

    /// <summary>
    /// Writes one image's planes: <paramref name="destination"/>[c * P + p] = rgb[3 p + c] for
    /// P = <paramref name="rgb"/>.Length / 3 pixels.
    /// </summary>
    public static void Pack(ReadOnlySpan<byte> rgb, Span<float> destination)
    {
        if (rgb.Length % 3 != 0)
        {
            throw new ArgumentException("RGB data length must be a multiple of 3.", nameof(rgb));
        }

        var pixels = rgb.Length / 3;
        if (destination.Length != rgb.Length)
        {
            throw new ArgumentException($"Destination holds {destination.Length} values; {rgb.Length} needed.", nameof(destination));
        }

        var r = destination[..pixels];
        var g = destination.Slice(pixels, pixels);
        var b = destination.Slice(2 * pixels, pixels);
        var p = 0;
        if (Ssse3.IsSupported)
        {
            p = PackSsse3(rgb, r, g, b);
        }

        for (; p < pixels; p++)
        {
            r[p] = rgb[3 * p];
            g[p] = rgb[(3 * p) + 1];
            b[p] = rgb[(3 * p) + 2];
        }
    }

    /// <summary>Handles whole groups of 16 pixels; returns how many pixels it wrote.</summary>
    private static int PackSsse3(ReadOnlySpan<byte> rgb, Span<float> r, Span<float> g, Span<float> b)
    {
        var pixels = r.Length;
        var groups = pixels / 16;
        ref var src = ref MemoryMarshal.GetReference(rgb);
        ref var rRef = ref MemoryMarshal.GetReference(r);
        ref var gRef = ref MemoryMarshal.GetReference(g);
        ref var bRef = ref MemoryMarshal.GetReference(b);
        var masks = ShuffleMasks;
        for (var i = 0; i < groups; i++)
        {
            var offset = (nuint)(i * 48);
            var v0 = Vector128.LoadUnsafe(ref src, offset);
            var v1 = Vector128.LoadUnsafe(ref src, offset + 16);
            var v2 = Vector128.LoadUnsafe(ref src, offset + 32);
            var pixel = (nuint)(i * 16);
            StoreWidened(Ssse3.Shuffle(v0, masks[0]) | Ssse3.Shuffle(v1, masks[1]) | Ssse3.Shuffle(v2, masks[2]), ref rRef, pixel);
            StoreWidened(Ssse3.Shuffle(v0, masks[3]) | Ssse3.Shuffle(v1, masks[4]) | Ssse3.Shuffle(v2, masks[5]), ref gRef, pixel);
            StoreWidened(Ssse3.Shuffle(v0, masks[6]) | Ssse3.Shuffle(v1, masks[7]) | Ssse3.Shuffle(v2, masks[8]), ref bRef, pixel);
        }

        return groups * 16;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreWidened(Vector128<byte> values, ref float destination, nuint index)
    {
        var (low, high) = Vector128.Widen(values);
        var (q0, q1) = Vector128.Widen(low);
        var (q2, q3) = Vector128.Widen(high);
        // Values are 0..255, so the signed conversion (a single cvtdq2ps) is exact.
        Vector128.ConvertToSingle(q0.AsInt32()).StoreUnsafe(ref destination, index);
        Vector128.ConvertToSingle(q1.AsInt32()).StoreUnsafe(ref destination, index + 4);
        Vector128.ConvertToSingle(q2.AsInt32()).StoreUnsafe(ref destination, index + 8);
        Vector128.ConvertToSingle(q3.AsInt32()).StoreUnsafe(ref destination, index + 12);
    }

    private static Vector128<byte>[] BuildShuffleMasks()
    {
        var masks = new Vector128<byte>[9];
        Span<byte> mask = stackalloc byte[16];
        for (var channel = 0; channel < 3; channel++)
        {
            for (var block = 0; block < 3; block++)
            {
                for (var k = 0; k < 16; k++)
                {
                    var source = (3 * k) + channel;
                    mask[k] = source / 16 == block ? (byte)(source % 16) : (byte)0x80;
                }

                masks[(channel * 3) + block] = Vector128.Create<byte>(mask);
            }
        }

        return masks;
    }
}
