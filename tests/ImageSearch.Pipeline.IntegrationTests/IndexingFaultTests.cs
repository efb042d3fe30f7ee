using ImageSearch.Contracts;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;

namespace ImageSearch.Pipeline.IntegrationTests;

/// <summary>
/// An embedding the indexer could not store after all its retries (its disk stayed full, say) must
/// not leave the file pending for good: the scan skips pending files, so it would never be indexed
/// until a restart. Found by reading the disk-full path; the fault now releases the file.
/// </summary>
public sealed class IndexingFaultTests : IAsyncLifetime
{
    private readonly string root = Directory.CreateTempSubdirectory("indexing-fault-").FullName;
    private PipelineHost host = null!;
    private string library = "";

    public async Task InitializeAsync()
    {
        (library, _) = TestData.MakeLibrary(root, 1);
        File.Delete(Path.Combine(library, "copy.jpg"));
        host = await PipelineHost.StartAsync(PipelineRoles.Indexer | PipelineRoles.Query, library, Path.Combine(root, "db"), null).ConfigureAwait(false);
    }

    public async Task DisposeAsync()
    {
        await host.DisposeAsync().ConfigureAwait(false);
        Directory.Delete(root, recursive: true);
    }

    [Fact]
    public async Task A_file_whose_embedding_could_not_be_stored_is_announced_again_by_the_next_scan()
    {
        var path = Directory.GetFiles(library).Select(Path.GetFileName).Single()!;
        var progress = host.Services.GetRequiredService<IngestionProgress>();
        var scanner = host.Services.GetRequiredService<LibraryScanner>();

        // Announced, then its ImageEmbedded faulted in the indexer (as MassTransit reports it after the last retry).
        progress.Announced(path);
        Assert.Equal((0, 0), await scanner.ScanAsync(CancellationToken.None)); // pending: a scan leaves it alone
        var file = new FileInfo(Path.Combine(library, path));
        var embedded = new ImageEmbedded(path, TestData.IdOf(library, path).Value, new float[host.Model.Dimensions], host.Model.Key, file.Length, 480, 360,
            new string('0', 64), file.LastWriteTimeUtc);
        await host.Bus.Publish<Fault<ImageEmbedded>>(new
        {
            FaultId = NewId.NextGuid(),
            FaultedMessageId = NewId.NextGuid(),
            Timestamp = DateTime.UtcNow,
            Exceptions = new[] { new { ExceptionType = "System.IO.IOException", Message = "The index could not be written: its disk is full", StackTrace = "", Source = "test" } },
            Host = new { MachineName = "test" },
            FaultMessageTypes = new[] { "urn:message:ImageSearch.Contracts:ImageEmbedded" },
            Message = embedded,
        });

        await TestData.UntilAsync(() => !progress.IsPending(path), "the fault to release the file");
        Assert.Equal((1, 0), await scanner.ScanAsync(CancellationToken.None));
    }
}
