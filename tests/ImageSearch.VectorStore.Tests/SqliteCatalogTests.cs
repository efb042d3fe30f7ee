using ImageSearch.Core;

namespace ImageSearch.VectorStore.Tests;

public sealed class SqliteCatalogTests : IDisposable
{
    private static readonly DateTimeOffset Modified = new(2023, 11, 5, 8, 30, 15, 123, TimeSpan.FromHours(-5));
    private readonly TempDirectory _temp = new();
    private readonly FixedClock _clock = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public async Task SetIndexed_returns_the_previous_id_only_when_it_changes()
    {
        using var catalog = Open();
        Assert.Null(await catalog.SetIndexedAsync("a.jpg", TestData.Id(1), 10, Modified));
        Assert.Null(await catalog.SetIndexedAsync("a.jpg", TestData.Id(1), 10, Modified));
        Assert.Equal(TestData.Id(1), await catalog.SetIndexedAsync("a.jpg", TestData.Id(2), 11, Modified.AddDays(1)));

        var entry = await catalog.GetAsync("a.jpg");
        Assert.Equal(new CatalogEntry("a.jpg", TestData.Id(2), FileState.Indexed, null, 11, Modified.AddDays(1), _clock.Now), entry);
    }

    [Fact]
    public async Task SetFailed_records_the_reason_and_drops_the_id()
    {
        using var catalog = Open();
        await catalog.SetIndexedAsync("a.jpg", TestData.Id(1), 10, Modified);
        Assert.Equal(TestData.Id(1), await catalog.SetFailedAsync("a.jpg", "corrupt JPEG", 12, Modified));
        Assert.Null(await catalog.SetFailedAsync("b.png", "unsupported", 3, Modified));

        var entry = await catalog.GetAsync("a.jpg");
        Assert.Equal(FileState.Failed, entry!.State);
        Assert.Null(entry.Id);
        Assert.Equal("corrupt JPEG", entry.Reason);
        Assert.Equal(0, await catalog.CountPathsAsync(TestData.Id(1)));
    }

    [Fact]
    public async Task Paths_sharing_an_image_are_counted_and_found()
    {
        using var catalog = Open();
        await catalog.SetIndexedAsync("z/copy.jpg", TestData.Id(1), 10, Modified);
        await catalog.SetIndexedAsync("a/orig.jpg", TestData.Id(1), 10, Modified);
        await catalog.SetIndexedAsync("other.jpg", TestData.Id(2), 10, Modified);

        Assert.Equal(2, await catalog.CountPathsAsync(TestData.Id(1)));
        Assert.Equal("a/orig.jpg", await catalog.FindPathAsync(TestData.Id(1)));

        Assert.Equal(TestData.Id(1), await catalog.RemoveAsync("a/orig.jpg"));
        Assert.Null(await catalog.RemoveAsync("a/orig.jpg"));
        Assert.Equal(1, await catalog.CountPathsAsync(TestData.Id(1)));
        Assert.Equal("z/copy.jpg", await catalog.FindPathAsync(TestData.Id(1)));
        Assert.Null(await catalog.FindPathAsync(TestData.Id(3)));
        Assert.Null(await catalog.GetAsync("a/orig.jpg"));
    }

    [Fact]
    public async Task Lists_and_counts_by_state_survive_reopening()
    {
        using (var catalog = Open())
        {
            await catalog.SetIndexedAsync("c.jpg", TestData.Id(1), 1, Modified);
            await catalog.SetIndexedAsync("a.jpg", TestData.Id(2), 1, Modified);
            await catalog.SetFailedAsync("b.jpg", "truncated", 1, Modified);
        }

        using var reopened = Open();
        Assert.Equal(new CatalogCounts(3, 2, 1), await reopened.CountsAsync());
        Assert.Equal(["a.jpg", "b.jpg", "c.jpg"], (await reopened.ListAsync(null, 10)).Select(e => e.Path));
        Assert.Equal(["a.jpg"], (await reopened.ListAsync(FileState.Indexed, 1)).Select(e => e.Path));
        Assert.Equal(["b.jpg"], (await reopened.ListAsync(FileState.Failed, 10)).Select(e => e.Path));
        var entry = await reopened.GetAsync("c.jpg");
        Assert.Equal(Modified, entry!.ModifiedAt);
        Assert.Equal(Modified.Offset, entry.ModifiedAt.Offset);
    }

    [Fact]
    public async Task Recent_lists_indexed_files_most_recently_recorded_first()
    {
        using var catalog = Open();
        var start = _clock.Now;
        await catalog.SetIndexedAsync("old.jpg", TestData.Id(1), 1, Modified);
        _clock.Now = start.AddMinutes(1);
        await catalog.SetIndexedAsync("b.jpg", TestData.Id(2), 1, Modified);
        await catalog.SetIndexedAsync("a.jpg", TestData.Id(3), 1, Modified);
        _clock.Now = start.AddMinutes(2);
        await catalog.SetFailedAsync("broken.jpg", "truncated", 1, Modified);
        _clock.Now = start.AddMinutes(3);
        await catalog.SetIndexedAsync("changed.jpg", TestData.Id(4), 1, Modified);

        Assert.Equal(["changed.jpg", "a.jpg", "b.jpg", "old.jpg"], (await catalog.ListRecentAsync(10)).Select(e => e.Path));
        Assert.Equal(["changed.jpg", "a.jpg"], (await catalog.ListRecentAsync(2)).Select(e => e.Path));
    }

    [Fact]
    public async Task Concurrent_writers_do_not_lose_updates()
    {
        using var catalog = Open();
        await Task.WhenAll(Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
        {
            for (var i = 0; i < 50; i++)
            {
                await catalog.SetIndexedAsync($"w{w}/{i}.jpg", TestData.Id(i), i, Modified);
            }
        })));

        Assert.Equal(new CatalogCounts(200, 200, 0), await catalog.CountsAsync());
        Assert.Equal(4, await catalog.CountPathsAsync(TestData.Id(7)));
    }

    private SqliteCatalog Open() => new(_temp.Sub(SqliteCatalog.DefaultFileName), _clock);

    private sealed class FixedClock : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = new(2025, 1, 2, 3, 4, 5, TimeSpan.Zero);

        public override DateTimeOffset GetUtcNow() => Now;
    }
}
