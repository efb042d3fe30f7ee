using System.Globalization;
using System.Text;
using ImageSearch.Core;
using Microsoft.Extensions.Logging;

namespace ImageSearch.Api;

/// <summary>An upload refused for its content or size; becomes a ProblemDetails response.</summary>
public sealed class UploadRejectedException(int status, string title, string detail) : Exception(detail)
{
    public int Status { get; } = status;

    public string Title { get; } = title;
}

/// <summary>
/// An upload whose content was checked: an accepted image format within the limits.
/// <see cref="OriginalName"/> is the name as sent; <see cref="Name"/> its last segment, fit for messages.
/// </summary>
public sealed record CheckedUpload(string OriginalName, string Name, byte[] Bytes, ImageInfo Info, ImageId Id);

/// <summary>An upload written into the library. <see cref="Path"/> is library-relative, as in search hits.</summary>
public sealed record StoredUpload(string Name, string Path, string Id, string Format, int Width, int Height, long SizeBytes);

/// <summary>
/// Checks uploaded files and writes them into the library folder, where the watcher ingests them
/// like any other file. Content decides everything (never the name or the declared type): the
/// bytes must decode fully as an accepted format within the size and pixel limits. Names come from
/// the uploaded name, reduced to letters, digits, '-' and '_', with the extension of the format
/// found; nothing is ever overwritten (an existing name gets a numeric suffix).
/// </summary>
public sealed partial class UploadStore(IImageDecoder decoder, IOptions<UploadOptions> options, ILogger<UploadStore> logger)
{
    /// <summary>Longest stem kept from an uploaded name.</summary>
    public const int MaxStemLength = 64;

    private const string TempPrefix = ".upload-";
    private const int MaxSuffix = 10_000;
    private volatile string? problem;

    /// <summary>Extension written for each format the decoder reports.</summary>
    public static IReadOnlyDictionary<string, string> Extensions { get; } = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["jpeg"] = ".jpg",
        ["png"] = ".png",
        ["webp"] = ".webp",
        ["gif"] = ".gif",
        ["tiff"] = ".tif",
        ["heif"] = ".heic",
        ["avif"] = ".avif",
    };

    /// <summary>Full path of the upload folder.</summary>
    public string FolderPath => Path.GetFullPath(Path.Combine(options.Value.LibraryRoot, options.Value.Folder));

    /// <summary>Why uploads cannot be written right now (the folder is not writable), or null. Set at start and after each write.</summary>
    public string? Problem => problem;

    /// <summary>
    /// Reads and checks one file: size (before reading), format sniffed from the content, declared
    /// pixels (on the header, before decoding), then a full decode at a small size so truncated or
    /// corrupt files are refused now rather than failing ingestion later.
    /// </summary>
    /// <exception cref="UploadRejectedException">413, 415 or 400 with a message naming the file.</exception>
    public CheckedUpload Check(string? originalName, byte[] bytes)
    {
        var o = options.Value;
        var name = DisplayName(originalName);
        if (bytes.Length == 0)
        {
            throw new UploadRejectedException(StatusCodes.Status400BadRequest, "Empty file", $"'{name}' is empty.");
        }

        CheckSize(name, bytes.Length);
        var limits = new DecodeLimits(o.MaxFileBytes, o.MaxPixels);
        try
        {
            var info = decoder.ReadInfo(bytes, limits);
            if (!Extensions.ContainsKey(info.Format))
            {
                throw new UploadRejectedException(StatusCodes.Status415UnsupportedMediaType, "Unsupported image format",
                    $"'{name}' is a {info.Format} image, which the library does not index.");
            }

            decoder.DecodeFit(bytes, 64, limits);
            return new CheckedUpload(originalName ?? "", name, bytes, info, ImageId.FromContent(bytes));
        }
        catch (InvalidImageException e)
        {
            var (status, title) = e.Kind switch
            {
                ImageErrorKind.UnsupportedFormat => (StatusCodes.Status415UnsupportedMediaType, "Unsupported image format"),
                ImageErrorKind.TooLarge => (StatusCodes.Status413PayloadTooLarge, "Image too large"),
                ImageErrorKind.Empty => (StatusCodes.Status400BadRequest, "Empty file"),
                _ => (StatusCodes.Status400BadRequest, "Corrupt image"),
            };
            throw new UploadRejectedException(status, title, $"'{name}': {e.Message}");
        }
    }

    /// <summary>Refuses a file over <see cref="UploadOptions.MaxFileBytes"/> (413), before its bytes are read.</summary>
    public void CheckSize(string originalName, long length)
    {
        var max = options.Value.MaxFileBytes;
        if (length > max)
        {
            throw new UploadRejectedException(StatusCodes.Status413PayloadTooLarge, "File too large",
                $"'{DisplayName(originalName)}' is {FormatBytes(length)}; uploads are limited to {FormatBytes(max)} per file (Upload:MaxFileBytes).");
        }
    }

    /// <summary>
    /// Writes the file into the upload folder: first to a hidden temporary name in the same folder
    /// (the watcher skips hidden files), flushed to disk, then linked to its final name without
    /// replacing anything (File.Move without overwrite: link(2) then unlink on Linux, which fails if
    /// the name exists), so the watcher never sees a partial file and no existing file is touched.
    /// </summary>
    public async Task<StoredUpload> SaveAsync(CheckedUpload upload, CancellationToken ct)
    {
        var folder = FolderPath;
        var temp = Path.Combine(folder, TempPrefix + Guid.NewGuid().ToString("N") + ".tmp");
        try
        {
            Directory.CreateDirectory(folder);
            var fileOptions = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None, Options = FileOptions.Asynchronous };
            await using (var stream = new FileStream(temp, fileOptions))
            {
                await stream.WriteAsync(upload.Bytes, ct).ConfigureAwait(false);
                stream.Flush(flushToDisk: true);
            }

            var stem = SafeStem(upload.OriginalName);
            var extension = Extensions[upload.Info.Format];
            for (var n = 1; n <= MaxSuffix; n++)
            {
                var name = n == 1 ? stem + extension : string.Create(CultureInfo.InvariantCulture, $"{stem}-{n}{extension}");
                var target = Path.Combine(folder, name);
                if (File.Exists(target))
                {
                    continue;
                }

                try
                {
                    File.Move(temp, target, overwrite: false);
                }
                catch (IOException) when (File.Exists(target))
                {
                    // Another upload took the name between the check and the move: try the next one.
                    continue;
                }

                problem = null;
                var relative = string.IsNullOrEmpty(options.Value.Folder) ? name : options.Value.Folder.TrimEnd('/') + "/" + name;
                LogStored(logger, relative, upload.Bytes.Length, upload.Id.Value);
                return new StoredUpload(upload.Name, relative, upload.Id.Value, upload.Info.Format, upload.Info.Width, upload.Info.Height, upload.Bytes.Length);
            }

            throw new UploadRejectedException(StatusCodes.Status409Conflict, "No free name",
                $"'{upload.Name}': {MaxSuffix} files named {stem}{extension} or {stem}-N{extension} exist already; rename the file.");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            problem = $"the upload folder {folder} is not writable by this server ({e.Message})";
            throw new UploadRejectedException(StatusCodes.Status503ServiceUnavailable, "Uploads unavailable", $"Could not store '{upload.Name}': {problem}.");
        }
        finally
        {
            TryDelete(temp);
        }
    }

    /// <summary>
    /// Deletes one file of the library, named by its library-relative path (as the catalog holds
    /// it). Returns false when it was already gone. A path that is not library-relative or would
    /// leave the library is refused (400), whatever the catalog says.
    /// </summary>
    /// <exception cref="UploadRejectedException">400 for a path outside the library; 503 when the file cannot be deleted.</exception>
    public bool DeleteLibraryFile(string relativePath)
    {
        var root = Path.GetFullPath(options.Value.LibraryRoot);
        var full = FilesApi.IsLibraryPath(relativePath) ? Path.GetFullPath(Path.Combine(root, relativePath)) : null;
        if (full is null || !full.StartsWith(Path.TrimEndingDirectorySeparator(root) + Path.DirectorySeparatorChar, StringComparison.Ordinal))
        {
            throw new UploadRejectedException(StatusCodes.Status400BadRequest, "Bad path", $"'{DisplayName(relativePath)}' is not inside the library.");
        }

        try
        {
            if (!File.Exists(full))
            {
                return false;
            }

            File.Delete(full);
            LogDeleted(logger, relativePath);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UploadRejectedException(StatusCodes.Status503ServiceUnavailable, "Delete failed", $"Could not delete '{relativePath}': {e.Message}");
        }
    }

    /// <summary>Checks at start that the upload folder can be written (creates it and a probe file), recording the problem if not.</summary>
    public string? Probe()
    {
        var probe = Path.Combine(FolderPath, TempPrefix + "probe-" + Guid.NewGuid().ToString("N") + ".tmp");
        try
        {
            Directory.CreateDirectory(FolderPath);
            File.WriteAllBytes(probe, []);
            problem = null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            problem = $"the upload folder {FolderPath} is not writable by this server ({e.Message})";
        }
        finally
        {
            TryDelete(probe);
        }

        return problem;
    }

    /// <summary>
    /// The stem a stored file is named after: the uploaded name's last segment (either separator)
    /// without its extension, letters, digits and '_' kept, every other run of characters turned into
    /// one '-', at most <see cref="MaxStemLength"/> characters; "image" when nothing is left. The
    /// result never contains a separator, a dot or a control character, so it cannot leave the folder
    /// or hide the file.
    /// </summary>
    public static string SafeStem(string? originalName)
    {
        var name = (originalName ?? "").Replace('\\', '/');
        name = name[(name.LastIndexOf('/') + 1)..];
        var dot = name.LastIndexOf('.');
        if (dot > 0)
        {
            name = name[..dot];
        }

        var builder = new StringBuilder(Math.Min(name.Length, MaxStemLength));
        foreach (var c in name)
        {
            if (builder.Length >= MaxStemLength)
            {
                break;
            }

            // Combining marks stay with their letter (a decomposed "é" is "e" + U+0301). No
            // normalisation: the build runs with invariant globalization, which has none.
            if (char.IsLetterOrDigit(c) || c == '_' ||
                (builder.Length > 0 && builder[^1] != '-' && CharUnicodeInfo.GetUnicodeCategory(c) is UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark))
            {
                builder.Append(c);
            }
            else if (builder.Length > 0 && builder[^1] != '-')
            {
                builder.Append('-');
            }
        }

        var stem = builder.ToString().Trim('-', '_');
        return stem.Length == 0 ? "image" : stem;
    }

    /// <summary>The uploaded name as shown in messages: its last segment, control characters removed, shortened.</summary>
    internal static string DisplayName(string? originalName)
    {
        var name = (originalName ?? "").Replace('\\', '/');
        name = new string(name[(name.LastIndexOf('/') + 1)..].Where(c => !char.IsControl(c)).Take(120).ToArray());
        return name.Length == 0 ? "(unnamed file)" : name;
    }

    internal static string FormatBytes(long bytes) => bytes switch
    {
        >= 1024 * 1024 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (1024.0 * 1024):0.#} MB"),
        >= 1024 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0:0.#} KB"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{bytes} bytes"),
    };

    [LoggerMessage(Level = LogLevel.Information, Message = "Deleted library file {Path} (DELETE /api/images)")]
    private static partial void LogDeleted(ILogger logger, string path);

    [LoggerMessage(Level = LogLevel.Information, Message = "Stored upload {Path} ({Bytes} bytes, image {ImageId})")]
    private static partial void LogStored(ILogger logger, string path, int bytes, string imageId);

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A leftover hidden temporary file is ignored by the watcher; nothing else to do.
        }
    }
}
