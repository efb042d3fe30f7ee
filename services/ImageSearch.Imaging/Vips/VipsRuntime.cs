using System.Runtime.InteropServices;

namespace ImageSearch.Imaging.Vips;

/// <summary>
/// One-time, thread-safe initialisation of the process-wide libvips state, and access to its
/// process-wide error text.
/// </summary>
internal static class VipsRuntime
{
    private static readonly Lock InitLock = new();
    private static string? version;
    private static int decodesInFlight;

    /// <summary>The last GLib warning libvips logged on this thread (see <see cref="TakeThreadWarning"/>).</summary>
    [ThreadStatic]
    private static string? threadWarning;

    /// <summary>The libvips version string, e.g. "8.14.1". Initialises libvips on first use.</summary>
    public static string Version
    {
        get
        {
            EnsureInitialized();
            return version!;
        }
    }

    /// <summary>
    /// Calls vips_init once and sets the process-wide policy: no operation cache (every call decodes
    /// different bytes, and a cache would keep references to images over buffers we unpin), one
    /// worker thread per pipeline (callers parallelise across images), untrusted loaders blocked, and
    /// libvips' GLib warnings kept off stderr (one line per bad tile of every broken upload otherwise);
    /// the last one per thread is kept as a fallback reason, see <see cref="TakeThreadWarning"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">libvips cannot be loaded or initialised.</exception>
    public static void EnsureInitialized()
    {
        if (Volatile.Read(ref version) is not null)
        {
            return;
        }

        lock (InitLock)
        {
            if (version is not null)
            {
                return;
            }

            if (!OperatingSystem.IsLinux())
            {
                throw new PlatformNotSupportedException("The libvips decoder supports Linux only (it binds libvips.so.42 by P/Invoke).");
            }

            try
            {
                UsePrivateModuleFolder();
                if (VipsNative.Init("imagesearch") != 0)
                {
                    throw new InvalidOperationException($"vips_init failed: {TakeError() ?? "no reason given"}");
                }
            }
            catch (DllNotFoundException e)
            {
                throw new InvalidOperationException(
                    "libvips (libvips.so.42, 8.13 or later) is not installed; on Debian 12 run 'apt-get install libvips42'.", e);
            }

            // fail_on arrived in 8.12 and vips_block_untrusted_set in 8.13 (Debian 12 has 8.14).
            var found = Marshal.PtrToStringUTF8(VipsNative.VersionString()) ?? "";
            if (!System.Version.TryParse(found, out var parsed) || parsed < new System.Version(8, 13))
            {
                throw new InvalidOperationException($"libvips {found} is too old: the decoder needs 8.13 or later.");
            }

            VipsNative.CacheSetMax(0);
            VipsNative.ConcurrencySet(1);
            VipsNative.BlockUntrustedSet(1);
            unsafe
            {
                VipsNative.GLogSetHandler("VIPS", VipsNative.GLogLevelWarning, &KeepLogMessage, IntPtr.Zero);
            }

            Volatile.Write(ref version, found);
        }
    }

    /// <summary>
    /// Points libvips at a private module folder that links only the HEIF module (HEIC, AVIF), unless
    /// the operator set VIPSHOME.
    /// </summary>
    /// <remarks>
    /// vips_init loads every module in its module folder with GModule, i.e. dlopen(RTLD_GLOBAL).
    /// Debian's vips-openslide.so links the system libsqlite3, whose symbols then become global and
    /// capture the internal calls of the e_sqlite3 that Microsoft.Data.Sqlite loads later: the
    /// process crashes at its first INSERT. The magick, openslide and poppler modules are unwanted
    /// for untrusted input anyway (the JXL module's loader is blocked as untrusted). libvips derives
    /// the module folder from $VIPSHOME (see below).
    /// </remarks>
    private static void UsePrivateModuleFolder()
    {
        if (Environment.GetEnvironmentVariable("VIPSHOME") is not null)
        {
            return;
        }

        var found = Marshal.PtrToStringUTF8(VipsNative.VersionString()) ?? "";
        if (!System.Version.TryParse(found, out var parsed))
        {
            return;
        }

        var folderName = $"vips-modules-{parsed.Major}.{parsed.Minor}";
        string[] libDirs = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"];
        var systemModules = libDirs.Select(d => Path.Combine(d, folderName)).FirstOrDefault(Directory.Exists);

        // A fresh private folder (random name, owner-only) so no other user can plant a module in it.
        var prefix = Directory.CreateTempSubdirectory("imagesearch-vips-").FullName;
        var heif = systemModules is null ? null : Path.Combine(systemModules, "vips-heif.so");

        // Debian's build looks in $VIPSHOME/<multiarch>/ (the last part of its libdir), others in $VIPSHOME/lib/.
        var libNames = new[] { "lib", Path.GetFileName(Path.GetDirectoryName(systemModules ?? "")) }.Where(n => !string.IsNullOrEmpty(n)).Distinct();
        foreach (var lib in libNames)
        {
            var modules = Directory.CreateDirectory(Path.Combine(prefix, lib!, folderName)).FullName;
            if (heif is not null && File.Exists(heif))
            {
                File.CreateSymbolicLink(Path.Combine(modules, "vips-heif.so"), heif);
            }
        }

        VipsNative.SetEnv("VIPSHOME", prefix, 1);
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try
            {
                Directory.Delete(prefix, recursive: true);
            }
            catch (IOException)
            {
                // Best effort: a few bytes of symlinks in the temp folder.
            }
        };
    }

    /// <summary>
    /// Takes (copies and clears) libvips' error text and returns its last two distinct lines, joined,
    /// or null when it is empty.
    /// </summary>
    /// <remarks>
    /// libvips keeps ONE error buffer for the whole process. Under concurrency it can therefore hold
    /// lines from other images too, or have been cleared by another thread between our failing call
    /// and this read. The newest lines are the most likely to be ours, hence the tail. The text is a
    /// best-effort detail: callers decide the <see cref="Core.ImageErrorKind"/> from which call failed.
    /// </remarks>
    public static string? TakeError()
    {
        var copy = VipsNative.ErrorBufferCopy();
        string text;
        try
        {
            text = Marshal.PtrToStringUTF8(copy) ?? "";
        }
        finally
        {
            VipsNative.GFree(copy);
        }

        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Distinct(StringComparer.Ordinal)
            .TakeLast(2)
            .ToArray();
        return lines.Length == 0 ? null : string.Join("; ", lines);
    }

    /// <summary>
    /// Returns and forgets the last warning libvips logged on the calling thread. Some loaders only
    /// log their reason (libpng's "IHDR: CRC error" is a GLib warning, not error text); for header
    /// reads, which run on the caller's thread, this is that reason. Pixels are computed on libvips'
    /// worker threads, whose warnings are not seen here.
    /// </summary>
    public static string? TakeThreadWarning()
    {
        var warning = threadWarning;
        threadWarning = null;
        return warning;
    }

    /// <summary>
    /// Marks the start of a decode. When no other decode is running, clears the error text: warnings
    /// that successful decodes leave there (libjpeg's first warning per image goes there) would
    /// otherwise show up in the next failure's message, and the buffer, which has a fixed size and
    /// ignores appends once full, would eventually swallow later messages. Clearing while another
    /// decode runs could wipe that decode's error before it reads it, so under constant concurrency
    /// leftovers stay until a failure takes the text (<see cref="TakeError"/> clears it).
    /// </summary>
    public static unsafe void BeginDecode()
    {
        if (Interlocked.Increment(ref decodesInFlight) == 1 && *(byte*)VipsNative.ErrorBuffer() != 0)
        {
            VipsNative.ErrorClear();
        }
    }

    /// <summary>Marks the end of a decode started with <see cref="BeginDecode"/>.</summary>
    public static void EndDecode() => Interlocked.Decrement(ref decodesInFlight);

    [UnmanagedCallersOnly]
    private static void KeepLogMessage(IntPtr domain, int level, IntPtr message, IntPtr userData) =>
        threadWarning = Marshal.PtrToStringUTF8(message);
}
