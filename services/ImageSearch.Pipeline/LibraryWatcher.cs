using System.Collections.Concurrent;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace ImageSearch.Pipeline;

/// <summary>
/// Keeps the index in step with the library folder: a full scan at start, then a file watcher
/// whose events are debounced until a file has settled, plus a periodic full rescan as the
/// fallback for everything a watcher can miss (overflow, network mounts, inotify limits).
/// </summary>
public sealed partial class LibraryWatcher(
    LibraryScanner scanner,
    FolderLibrary library,
    IOptions<LibraryOptions> options,
    TimeProvider clock,
    ILogger<LibraryWatcher> logger) : BackgroundService
{
    /// <summary>A scan that has not finished in this long is abandoned and retried (it waits on the bus).</summary>
    private static readonly TimeSpan ScanTimeout = TimeSpan.FromMinutes(2);

    /// <summary>First wait before retrying a failed scan; doubles up to the rescan interval.</summary>
    private static readonly TimeSpan FirstRetry = TimeSpan.FromSeconds(5);

    private readonly ConcurrentDictionary<string, long> dirty = new(StringComparer.Ordinal);
    private volatile bool rescanRequested;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var o = options.Value;
        Directory.CreateDirectory(library.Root);
        using var watcher = o.Watch ? TryStartWatcher() : null;
        var settleTicks = (long)(o.SettleTime.TotalSeconds * clock.TimestampFrequency);
        var rescanTicks = (long)(o.RescanInterval.TotalSeconds * clock.TimestampFrequency);

        // A scan that fails (the broker or the query service away at start) is retried soon, with
        // backoff, not only at the next periodic rescan (5 minutes by default).
        var retry = FirstRetry;
        var nextRescan = NextScan(await ScanSafelyAsync(stoppingToken).ConfigureAwait(false));
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(TimeSpan.FromMilliseconds(250), clock, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }

            var now = clock.GetTimestamp();
            if (rescanRequested || now >= nextRescan)
            {
                rescanRequested = false;
                dirty.Clear();
                nextRescan = NextScan(await ScanSafelyAsync(stoppingToken).ConfigureAwait(false));
                continue;
            }

            foreach (var (path, stamp) in dirty)
            {
                if (now - stamp < settleTicks || !dirty.TryRemove(new KeyValuePair<string, long>(path, stamp)))
                {
                    continue;
                }

                try
                {
                    await scanner.AnnounceAsync(path, stoppingToken).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    LogAnnounceFailed(logger, ex, path);
                }
            }
        }

        // When the next full scan is due: a rescan interval after a good one, soon after a failed one.
        long NextScan(bool succeeded)
        {
            if (succeeded)
            {
                retry = FirstRetry;
                return clock.GetTimestamp() + rescanTicks;
            }

            var wait = Math.Min(rescanTicks, (long)(retry.TotalSeconds * clock.TimestampFrequency));
            retry = TimeSpan.FromTicks(Math.Min(retry.Ticks * 2, o.RescanInterval.Ticks));
            return clock.GetTimestamp() + wait;
        }
    }

    /// <summary>Runs a full scan within <see cref="ScanTimeout"/>; false when it failed or timed out.</summary>
    private async Task<bool> ScanSafelyAsync(CancellationToken stoppingToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        timeout.CancelAfter(ScanTimeout);
        try
        {
            await scanner.ScanAsync(timeout.Token).ConfigureAwait(false);
            return true;
        }
        catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
        {
            LogScanFailed(logger, ex);
            return false;
        }
    }

    private FileSystemWatcher? TryStartWatcher()
    {
        try
        {
            var w = new FileSystemWatcher(library.Root)
            {
                IncludeSubdirectories = true,
                NotifyFilter = NotifyFilters.FileName | NotifyFilters.DirectoryName | NotifyFilters.LastWrite | NotifyFilters.Size,
                InternalBufferSize = 64 * 1024,
            };
            w.Created += (_, e) => OnChanged(e.FullPath);
            w.Changed += (_, e) => OnChanged(e.FullPath);
            w.Deleted += (_, e) => OnChanged(e.FullPath);
            w.Renamed += (_, e) =>
            {
                OnChanged(e.OldFullPath);
                OnChanged(e.FullPath);
            };
            w.Error += (_, e) =>
            {
                // Overflow or a lost watch: only a full scan can tell what changed.
                LogWatcherError(logger, e.GetException());
                rescanRequested = true;
            };
            w.EnableRaisingEvents = true;
            return w;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException)
        {
            // E.g. the inotify watch limit: periodic rescans still keep the index right, only later.
            LogWatcherUnavailable(logger, ex, options.Value.RescanInterval);
            return null;
        }
    }

    private void OnChanged(string fullPath)
    {
        var rel = library.ToRelative(fullPath);
        if (rel is null)
        {
            return;
        }

        if (library.IsImagePath(rel))
        {
            dirty[rel] = clock.GetTimestamp();
        }
        else if (Directory.Exists(fullPath) || !Path.HasExtension(fullPath))
        {
            // A folder was created, moved or deleted: its files produce no events of their own.
            rescanRequested = true;
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Library scan failed or timed out; retrying soon")]
    private static partial void LogScanFailed(ILogger logger, Exception ex);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not announce {Path}")]
    private static partial void LogAnnounceFailed(ILogger logger, Exception ex, string path);

    [LoggerMessage(Level = LogLevel.Warning, Message = "File watcher error; rescanning the library")]
    private static partial void LogWatcherError(ILogger logger, Exception ex);

    [LoggerMessage(Level = LogLevel.Warning, Message = "File watching unavailable; relying on rescans every {Interval}")]
    private static partial void LogWatcherUnavailable(ILogger logger, Exception ex, TimeSpan interval);
}
