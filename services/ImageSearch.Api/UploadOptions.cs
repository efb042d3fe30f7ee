using System.ComponentModel.DataAnnotations;

namespace ImageSearch.Api;

/// <summary>
/// Uploads through <c>POST /api/images</c> into the watched folder. Section "Upload". The folder is
/// the library root (<c>Library:Root</c>): uploads are ordinary files there, ingested by the watcher
/// like any other, so a distributed gateway needs the bucket folder mounted read-write.
/// </summary>
public sealed class UploadOptions
{
    public const string Section = "Upload";

    /// <summary>Accept uploads. Needs <c>Library:Root</c>; set false for a gateway without the folder.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>Library-relative folder that uploads are written to ('/' separators; empty = the root itself).</summary>
    public string Folder { get; set; } = "uploads";

    /// <summary>Largest file accepted, in bytes.</summary>
    [Range(1, 1L << 32)]
    public long MaxFileBytes { get; set; } = 32L * 1024 * 1024;

    /// <summary>Largest number of pixels an uploaded image may declare (checked on the header, before decoding).</summary>
    [Range(1, 1L << 34)]
    public long MaxPixels { get; set; } = 100_000_000;

    /// <summary>Most files in one request.</summary>
    [Range(1, 1000)]
    public int MaxFiles { get; set; } = 20;

    /// <summary>Largest upload request body (all files and fields), in bytes; at least <see cref="MaxFileBytes"/>.</summary>
    [Range(1024, 1L << 36)]
    public long MaxRequestBytes { get; set; } = 256L * 1024 * 1024;

    /// <summary>Longest an upload request may take from its first byte to its answer; over it, 503 and nothing is stored.</summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "02:00:00")]
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>The watched folder. Not read from this section: set from <c>Library:Root</c>.</summary>
    public string LibraryRoot { get; set; } = "";
}

/// <summary>Cross-field checks of <see cref="UploadOptions"/>, run at start.</summary>
internal sealed class UploadOptionsValidator : IValidateOptions<UploadOptions>
{
    public ValidateOptionsResult Validate(string? name, UploadOptions options)
    {
        if (!options.Enabled)
        {
            return ValidateOptionsResult.Success;
        }

        var errors = new List<string>();
        if (string.IsNullOrWhiteSpace(options.LibraryRoot))
        {
            errors.Add("Upload:Enabled is true but Library:Root is not set. Uploads are written into the watched folder: give this process " +
                "the folder (a distributed gateway needs the bucket folder mounted read-write) or set Upload:Enabled=false.");
        }

        if (FolderProblem(options.Folder) is { } folder)
        {
            errors.Add($"Upload:Folder '{options.Folder}' {folder}.");
        }

        if (options.MaxRequestBytes < options.MaxFileBytes)
        {
            errors.Add($"Upload:MaxRequestBytes ({options.MaxRequestBytes}) is smaller than Upload:MaxFileBytes ({options.MaxFileBytes}).");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    /// <summary>Why a library-relative folder is unusable, or null. Hidden folders are refused: the watcher skips them.</summary>
    internal static string? FolderProblem(string? folder)
    {
        if (string.IsNullOrEmpty(folder))
        {
            return null;
        }

        if (folder.Contains('\\', StringComparison.Ordinal) || folder.Contains('\0', StringComparison.Ordinal) || folder.StartsWith('/'))
        {
            return "must be a relative path with '/' separators";
        }

        foreach (var segment in folder.Split('/'))
        {
            if (segment.Length == 0 || segment == "..")
            {
                return "must not contain empty or '..' segments";
            }

            if (segment.StartsWith('.'))
            {
                return "must not be hidden (the watcher skips folders whose name starts with '.')";
            }
        }

        return null;
    }
}
