using System.Runtime.InteropServices;

namespace ImageSearch.Imaging.Vips;

/// <summary>
/// Owns one reference to a VipsImage; disposing (or, as a last resort, finalizing) it calls
/// g_object_unref. A failed call leaves the handle invalid (NULL), and disposing that is a no-op.
/// </summary>
internal sealed class VipsImageHandle : SafeHandle
{
    /// <summary>Used by the P/Invoke marshaller for returned and out handles.</summary>
    public VipsImageHandle()
        : base(IntPtr.Zero, ownsHandle: true)
    {
    }

    public override bool IsInvalid => handle == IntPtr.Zero;

    public int Width => VipsNative.ImageGetWidth(this);

    public int Height => VipsNative.ImageGetHeight(this);

    public int Bands => VipsNative.ImageGetBands(this);

    public int Format => VipsNative.ImageGetFormat(this);

    public int Interpretation => VipsNative.ImageGetInterpretation(this);

    public bool HasAlpha => VipsNative.ImageHasAlpha(this) != 0;

    protected override bool ReleaseHandle()
    {
        VipsNative.GObjectUnref(handle);
        return true;
    }
}
