using System.Diagnostics;

namespace ImageSearch.Tests.Shared;

/// <summary>
/// A real, small filesystem (tmpfs) mounted over a folder, to be filled to its last byte: the disk
/// full tests of the store and of the gateway (linked into both test projects). Mounting needs root
/// or CAP_SYS_ADMIN (CI runs as root); an unprivileged run fails with mount's own message.
/// </summary>
internal static class SmallDisk
{
    /// <summary>Mounts a tmpfs of <paramref name="megabytes"/> MB over <paramref name="folder"/>.</summary>
    public static void Mount(string folder, int megabytes)
    {
        var (code, error) = Run("mount", "-t", "tmpfs", "-o", $"size={megabytes}m", "tmpfs", folder);
        Assert.True(code == 0, $"this test mounts a small tmpfs to fill it and needs root (or CAP_SYS_ADMIN): mount said: {error}");
    }

    /// <summary>Unmounts <paramref name="folder"/>, quietly when nothing is mounted there.</summary>
    public static void Unmount(string folder) => _ = Run("umount", folder);

    /// <summary>Writes zeros to <paramref name="path"/> until the filesystem has not one byte left (ENOSPC), keeping what was written.</summary>
    public static void Fill(string path)
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1, FileOptions.None);
        foreach (var size in new[] { 1 << 20, 4096, 1 })
        {
            var block = new byte[size];
            try
            {
                while (true)
                {
                    stream.Write(block);
                }
            }
            catch (IOException)
            {
                // Full at this block size; go on with smaller ones.
            }
        }
    }

    private static (int Code, string Error) Run(string program, params string[] args)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        try
        {
            using var p = Process.Start(psi)!;
            var error = p.StandardError.ReadToEnd();
            p.WaitForExit();
            return (p.ExitCode, error);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return (-1, e.Message);
        }
    }
}
