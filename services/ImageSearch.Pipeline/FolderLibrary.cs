using Microsoft.Extensions.Options;

namespace ImageSearch.Pipeline;

/// <summary>A file of the library as seen by a scan.</summary>
public sealed record LibraryFile(string Path, long SizeBytes, DateTimeOffset ModifiedAt);

/// <summary>
/// The library folder. Converts between library-relative paths ('/' separators) and full paths,
/// and refuses any relative path that would escape the root.
/// </summary>
public sealed class FolderLibrary(IOptions<LibraryOptions> options)
{
    private readonly string root = Path.GetFullPath(options.Value.Root);
    private readonly HashSet<string> extensions = new(options.Value.Extensions, StringComparer.OrdinalIgnoreCase);

    public string Root => root;

    public bool IsImagePath(string path) => extensions.Contains(Path.GetExtension(path)) && !IsHidden(path);

    /// <summary>Enumerates image files under the root (hidden files and folders skipped, symlinked folders not followed).</summary>
    public IEnumerable<LibraryFile> Scan()
    {
        if (!Directory.Exists(root))
        {
            yield break;
        }

        var enumeration = new EnumerationOptions
        {
            RecurseSubdirectories = true,
            IgnoreInaccessible = true,
            AttributesToSkip = FileAttributes.Hidden | FileAttributes.ReparsePoint,
        };
        foreach (var full in Directory.EnumerateFiles(root, "*", enumeration))
        {
            var rel = ToRelative(full);
            if (rel is null || !IsImagePath(rel))
            {
                continue;
            }

            var info = new FileInfo(full);
            if (info.Exists)
            {
                yield return new LibraryFile(rel, info.Length, info.LastWriteTimeUtc);
            }
        }
    }

    /// <summary>The library-relative path of a full path, or null when it is outside the root.</summary>
    public string? ToRelative(string fullPath)
    {
        var rel = Path.GetRelativePath(root, Path.GetFullPath(fullPath));
        if (rel == "." || rel.StartsWith("..", StringComparison.Ordinal) || Path.IsPathRooted(rel))
        {
            return null;
        }

        return rel.Replace(Path.DirectorySeparatorChar, '/');
    }

    /// <summary>The full path of a library-relative path. Throws when it would leave the root.</summary>
    public string ToFull(string relativePath)
    {
        ArgumentException.ThrowIfNullOrEmpty(relativePath);
        if (relativePath.Contains('\0', StringComparison.Ordinal) || Path.IsPathRooted(relativePath))
        {
            throw new ArgumentException($"'{relativePath}' is not a library-relative path.", nameof(relativePath));
        }

        var full = Path.GetFullPath(Path.Combine(root, relativePath));
        if (ToRelative(full) is null)
        {
            throw new ArgumentException($"'{relativePath}' points outside the library.", nameof(relativePath));
        }

        return full;
    }

    /// <summary>
    /// The file at a library-relative path, or null when there is none. A symbolic link counts as
    /// none, as in <see cref="Scan"/>: a link may point outside the library, and what the watcher
    /// announces must agree with what a rescan finds.
    /// </summary>
    public LibraryFile? Stat(string relativePath)
    {
        var info = new FileInfo(ToFull(relativePath));
        return info.Exists && (info.Attributes & FileAttributes.ReparsePoint) == 0 ? new LibraryFile(relativePath, info.Length, info.LastWriteTimeUtc) : null;
    }

    private static bool IsHidden(string relativePath) =>
        relativePath.StartsWith('.') || relativePath.Contains("/.", StringComparison.Ordinal);
}
