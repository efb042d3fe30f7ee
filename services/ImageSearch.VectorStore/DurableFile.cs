namespace ImageSearch.VectorStore;

/// <summary>
/// Crash-safe file replacement: write a temporary file, fsync it, rename it over the target, fsync
/// the directory. After a crash the target holds either the old or the new content, never a mix.
/// </summary>
internal static class DurableFile
{
    /// <summary>Suffix of files being written; leftovers of a crash are deleted on open.</summary>
    public const string TempSuffix = ".tmp";

    public static void WriteAllBytes(string path, ReadOnlySpan<byte> content)
    {
        var temp = path + TempSuffix;
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            stream.Write(content);
            stream.Flush(flushToDisk: true);
        }

        Publish(temp, path);
    }

    /// <summary>Renames an already fsynced <paramref name="temp"/> over <paramref name="path"/> and makes the rename durable.</summary>
    public static void Publish(string temp, string path)
    {
        // rename(2): atomic replacement on POSIX file systems.
        File.Move(temp, path, overwrite: true);
        SyncDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    /// <summary>fsync on the directory, so renames and deletions in it survive a power loss.</summary>
    public static void SyncDirectory(string directory) => HnswNative.Check(HnswNative.FsyncPath(directory));
}
