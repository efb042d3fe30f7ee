using ImageSearch.Core;
using ImageSearch.Tests.Shared;

namespace ImageSearch.VectorStore.Tests;

/// <summary>
/// The disk holding the index fills up while the store writes: a real, small filesystem (tmpfs)
/// filled to the last byte. The write fails with an error that says the disk is full; nothing
/// acknowledged is lost; the store keeps answering searches, opens again while the disk is still
/// full, and takes writes again once there is room.
/// </summary>
public sealed class DiskFullTests : IDisposable
{
    private const int Dim = 512;
    private static readonly EmbeddingModelInfo Model = new("full", "1", Dim, 8, 8);
    private readonly TempDirectory _temp = new();

    public void Dispose()
    {
        SmallDisk.Unmount(_temp.Path);
        _temp.Dispose();
    }

    [Fact]
    public async Task A_full_disk_fails_the_write_clearly_and_the_index_stays_readable()
    {
        // A 6 MB tmpfs: mounting needs root (CI runs as root); an unprivileged run says so.
        SmallDisk.Mount(_temp.Path, 6);
        var folder = Path.Combine(_temp.Path, "index");
        var options = new EmbeddedStoreOptions { Directory = folder, SnapshotEvery = 50, ExactThreshold = 0 };

        var acknowledged = new List<int>();
        var filler = Path.Combine(_temp.Path, "filler");
        Exception failure;
        using (var store = new EmbeddedVectorStore(options, Model))
        {
            for (var batch = 0; batch < 5; batch++)
            {
                await store.UpsertAsync(TestData.Records(batch * 20, 20, Dim));
                acknowledged.AddRange(Enumerable.Range(batch * 20, 20));
            }

            // Another program takes every byte left.
            SmallDisk.Fill(filler);

            // Writes now fail, each with the reason, and change nothing.
            failure = await Assert.ThrowsAnyAsync<Exception>(() => store.UpsertAsync(TestData.Records(1000, 20, Dim)));
            await Assert.ThrowsAnyAsync<Exception>(() => store.UpsertAsync(TestData.Records(2000, 50, Dim)));
            await Assert.ThrowsAnyAsync<Exception>(() => store.DeleteAsync([TestData.Id(0)]));

            // Reads go on: every acknowledged point is there and found.
            await AssertReadableAsync(store, acknowledged);
            Assert.Equal(failure.Message, store.LastWriteError);
        }

        Assert.IsType<IOException>(failure);
        Assert.Contains("disk", failure.Message, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("full", failure.Message, StringComparison.OrdinalIgnoreCase);
        Assert.Contains(folder, failure.Message, StringComparison.Ordinal);

        // Closed and opened again on the still-full disk: readable, nothing lost.
        using (var reopened = new EmbeddedVectorStore(options, Model))
        {
            await AssertReadableAsync(reopened, acknowledged);

            // Room again: writes resume without anything to repair.
            File.Delete(filler);
            await reopened.UpsertAsync(TestData.Records(3000, 20, Dim));
            acknowledged.AddRange(Enumerable.Range(3000, 20));
            await reopened.DeleteAsync([TestData.Id(0)]);
            acknowledged.Remove(0);
            Assert.Null(reopened.LastWriteError);
        }

        using var last = new EmbeddedVectorStore(options, Model);
        await AssertReadableAsync(last, acknowledged);
        Assert.Null(await last.GetAsync(TestData.Id(0)));
    }

    private static async Task AssertReadableAsync(EmbeddedVectorStore store, List<int> acknowledged)
    {
        Assert.Equal(acknowledged.Count, await store.CountAsync());
        foreach (var n in acknowledged.Where((_, i) => i % 7 == 0))
        {
            var hits = await store.SearchAsync(TestData.Vector(n, Dim), new VectorQuery(1));
            Assert.Equal(TestData.Id(n), hits[0].Id);
        }
    }
}
