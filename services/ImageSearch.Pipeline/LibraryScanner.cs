using ImageSearch.Contracts;
using MassTransit;
using Microsoft.Extensions.Logging;

namespace ImageSearch.Pipeline;

/// <summary>
/// Compares the library folder with what the index knows (asked over the bus, so the watcher can
/// run in its own process) and publishes what changed: ImageAdded for new or modified files,
/// ImageRemoved for files that are gone. Safe to run any number of times: unchanged files and
/// files already in flight are not announced again, and the consumers are idempotent anyway.
/// </summary>
public sealed partial class LibraryScanner(
    FolderLibrary library,
    IRequestClient<ListLibraryFiles> known,
    IBus publisher,
    IngestionProgress progress,
    ILogger<LibraryScanner> logger)
{
    private const int PageSize = 2000;

    private readonly SemaphoreSlim gate = new(1, 1);

    /// <summary>Runs one full scan. Returns how many added and removed events were published.</summary>
    public async Task<(int Added, int Removed)> ScanAsync(CancellationToken cancellationToken)
    {
        await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var indexed = await KnownFilesAsync(cancellationToken).ConfigureAwait(false);
            var added = new List<ImageAdded>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var file in library.Scan())
            {
                seen.Add(file.Path);
                if (indexed.TryGetValue(file.Path, out var entry) && Unchanged(entry, file))
                {
                    continue;
                }

                if (!progress.IsPending(file.Path))
                {
                    added.Add(new ImageAdded(file.Path, file.SizeBytes, file.ModifiedAt));
                }
            }

            var removed = indexed.Keys.Where(p => !seen.Contains(p)).Select(p => new ImageRemoved(p)).ToList();
            await PublishAsync(added, m => m.Path, cancellationToken).ConfigureAwait(false);
            await PublishAsync(removed, m => m.Path, cancellationToken).ConfigureAwait(false);
            LogScanned(logger, seen.Count, added.Count, removed.Count);
            return (added.Count, removed.Count);
        }
        finally
        {
            gate.Release();
        }
    }

    /// <summary>
    /// Announces one file whose state changed on disk (from the file watcher): added when it exists,
    /// removed when not. The consumers make both harmless when nothing really changed.
    /// </summary>
    public async Task AnnounceAsync(string relativePath, CancellationToken cancellationToken)
    {
        if (library.Stat(relativePath) is { } file)
        {
            await PublishAsync([new ImageAdded(file.Path, file.SizeBytes, file.ModifiedAt)], m => m.Path, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            await PublishAsync([new ImageRemoved(relativePath)], m => m.Path, cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task<Dictionary<string, KnownFile>> KnownFilesAsync(CancellationToken cancellationToken)
    {
        var files = new Dictionary<string, KnownFile>(StringComparer.Ordinal);
        string? after = null;
        while (true)
        {
            var page = await known.GetResponse<LibraryFilesPage>(new ListLibraryFiles(after, PageSize), cancellationToken).ConfigureAwait(false);
            foreach (var f in page.Message.Files)
            {
                files[f.Path] = f;
            }

            if (!page.Message.More || page.Message.Files.Count == 0)
            {
                return files;
            }

            after = page.Message.Files[^1].Path;
        }
    }

    // Millisecond resolution: what the catalog stores; sub-millisecond differences are not edits.
    private static bool Unchanged(KnownFile entry, LibraryFile file) =>
        entry.SizeBytes == file.SizeBytes &&
        entry.ModifiedAt.ToUnixTimeMilliseconds() == file.ModifiedAt.ToUnixTimeMilliseconds();

    private async Task PublishAsync<T>(List<T> messages, Func<T, string> path, CancellationToken cancellationToken)
        where T : class
    {
        if (messages.Count == 0)
        {
            return;
        }

        foreach (var m in messages)
        {
            progress.Announced(path(m));
        }

        await publisher.PublishBatch(messages, cancellationToken).ConfigureAwait(false);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Scanned library: {Files} files, {Added} to ingest, {Removed} removed")]
    private static partial void LogScanned(ILogger logger, int files, int added, int removed);
}
