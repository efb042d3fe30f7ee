using ImageSearch.Contracts;
using ImageSearch.Core;
using MassTransit;

namespace ImageSearch.Pipeline;

/// <summary>
/// Answers the watcher's question "which files does the index know?" from the catalog, a page at a
/// time. Hosted where the catalog lives, so the watcher needs no state of its own and compares the
/// folder against the single source of truth in every hosting.
/// </summary>
public sealed class LibraryFilesConsumer(ICatalog catalog) : IConsumer<ListLibraryFiles>
{
    public const int MaxPage = 5000;

    public async Task Consume(ConsumeContext<ListLibraryFiles> context)
    {
        var limit = Math.Clamp(context.Message.Limit, 1, MaxPage);
        var entries = await catalog.ListPageAsync(context.Message.After, limit + 1, context.CancellationToken).ConfigureAwait(false);
        var files = entries.Take(limit).Select(e => new KnownFile(e.Path, e.SizeBytes, e.ModifiedAt)).ToList();
        await context.RespondAsync(new LibraryFilesPage(files, entries.Count > limit)).ConfigureAwait(false);
    }
}
