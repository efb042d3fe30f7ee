using ImageSearch.Core;

namespace ImageSearch.Pipeline.IntegrationTests;

/// <summary>
/// The query embedding queue's scheduling (pure logic, with a recording embedder whose first call
/// can be held open, so "arrived while a run was in progress" is arranged, not timed).
/// </summary>
public sealed class QueryEmbeddingQueueTests
{
    [Fact]
    public async Task A_lone_query_runs_at_once_on_the_latency_session_and_gets_its_own_vector()
    {
        using var embedder = new RecordingEmbedder();
        using var queue = new QueryEmbeddingQueue(embedder, maxImages: 8, cores: 2);

        var vectors = await queue.EmbedAsync([Image(7)]);

        Assert.Equal(7f, Assert.Single(vectors)[0]);
        var call = Assert.Single(embedder.Calls);
        Assert.Equal(EmbeddingWorkload.Latency, call.Workload);
        Assert.Equal((1, 0), queue.Counts);
    }

    [Fact]
    public async Task Queries_that_arrive_during_a_run_share_the_next_run_and_each_gets_its_own_vectors_in_order()
    {
        // One core: the gathered run is not split into shares (see the test of many images below).
        using var embedder = new RecordingEmbedder { HoldFirstCall = true };
        using var queue = new QueryEmbeddingQueue(embedder, maxImages: 8, cores: 1);

        var first = queue.EmbedAsync([Image(1)]);
        await embedder.FirstCallEntered.WaitAsync(TimeSpan.FromMinutes(1));
        var second = queue.EmbedAsync([Image(2)]);
        var third = queue.EmbedAsync([Image(3), Image(4)]);
        var fourth = queue.EmbedAsync([Image(5)]);
        embedder.Release();

        Assert.Equal([1f], (await first).Select(v => v[0]));
        Assert.Equal([2f], (await second).Select(v => v[0]));
        Assert.Equal([3f, 4f], (await third).Select(v => v[0]));
        Assert.Equal([5f], (await fourth).Select(v => v[0]));
        Assert.Equal(2, embedder.Calls.Count);
        Assert.Equal([2f, 3f, 4f, 5f], embedder.Calls[1].Firsts);
        Assert.Equal((2, 1), queue.Counts);
    }

    [Fact]
    public async Task A_run_takes_no_more_images_than_the_limit_and_never_splits_a_request()
    {
        using var embedder = new RecordingEmbedder { HoldFirstCall = true };
        using var queue = new QueryEmbeddingQueue(embedder, maxImages: 4, cores: 1);

        var first = queue.EmbedAsync([Image(1)]);
        await embedder.FirstCallEntered.WaitAsync(TimeSpan.FromMinutes(1));
        var waiting = new[]
        {
            queue.EmbedAsync([Image(2), Image(3), Image(4)]),
            queue.EmbedAsync([Image(5), Image(6)]),
            queue.EmbedAsync([Image(7), Image(8), Image(9), Image(10), Image(11)]),
        };
        embedder.Release();
        await Task.WhenAll(waiting);
        await first;

        Assert.Equal(
            [[1f], [2f, 3f, 4f], [5f, 6f], [7f, 8f, 9f, 10f, 11f]],
            embedder.Calls.Select(c => c.Firsts));
        Assert.Equal([5f, 6f], (await waiting[1]).Select(v => v[0]));
    }

    [Fact]
    public async Task Many_images_in_one_call_are_shared_among_the_cores_on_the_throughput_session()
    {
        using var embedder = new RecordingEmbedder();
        using var queue = new QueryEmbeddingQueue(embedder, maxImages: 8, cores: 2);

        var vectors = await queue.EmbedAsync(Enumerable.Range(1, 6).Select(i => Image((byte)i)).ToArray());

        Assert.Equal([1f, 2f, 3f, 4f, 5f, 6f], vectors.Select(v => v[0]));
        Assert.Equal(2, embedder.Calls.Count);
        Assert.All(embedder.Calls, c => Assert.Equal(EmbeddingWorkload.Throughput, c.Workload));
        Assert.Equal([1f, 2f, 3f, 4f, 5f, 6f], embedder.Calls.SelectMany(c => c.Firsts).Order());
    }

    [Fact]
    public async Task A_query_cancelled_while_it_waits_is_never_run()
    {
        using var embedder = new RecordingEmbedder { HoldFirstCall = true };
        using var queue = new QueryEmbeddingQueue(embedder, maxImages: 8, cores: 2);
        using var cancel = new CancellationTokenSource();

        var first = queue.EmbedAsync([Image(1)]);
        await embedder.FirstCallEntered.WaitAsync(TimeSpan.FromMinutes(1));
        var abandoned = queue.EmbedAsync([Image(2)], cancel.Token);
        var kept = queue.EmbedAsync([Image(3)]);
        await cancel.CancelAsync();
        embedder.Release();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => abandoned);
        Assert.Equal([3f], (await kept).Select(v => v[0]));
        await first;
        Assert.DoesNotContain(embedder.Calls, c => c.Firsts.Contains(2f));
    }

    [Fact]
    public async Task A_failed_run_fails_its_queries_and_the_queue_serves_the_next_ones()
    {
        using var embedder = new RecordingEmbedder { FailWhenFirstPixelIs = 9 };
        using var queue = new QueryEmbeddingQueue(embedder, maxImages: 8, cores: 2);

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => queue.EmbedAsync([Image(9)]));
        Assert.Contains("model failed", error.Message, StringComparison.Ordinal);
        Assert.Equal([4f], (await queue.EmbedAsync([Image(4)])).Select(v => v[0]));
    }

    [Fact]
    public async Task After_disposal_a_query_is_refused_clearly()
    {
        var embedder = new RecordingEmbedder();
        var queue = new QueryEmbeddingQueue(embedder, maxImages: 8, cores: 2);
        Assert.Single(await queue.EmbedAsync([Image(1)]));
        queue.Dispose();
        queue.Dispose();

        Assert.Throws<ObjectDisposedException>(() => { _ = queue.EmbedAsync([Image(2)]); });
        embedder.Dispose();
    }

    private static RgbImage Image(byte value) => new(1, 1, [value, 0, 0]);

    /// <summary>Returns each image's first byte as a one-dimensional "vector" and records each call.</summary>
    private sealed class RecordingEmbedder : IEmbedder
    {
        private readonly SemaphoreSlim _entered = new(0);
        private readonly SemaphoreSlim _release = new(0);
        private int _calls;

        public bool HoldFirstCall { get; init; }

        public byte? FailWhenFirstPixelIs { get; init; }

        public List<(EmbeddingWorkload Workload, float[] Firsts)> Calls { get; } = [];

        public SemaphoreSlim FirstCallEntered => _entered;

        public EmbeddingModelInfo Model { get; } = new("recording", "1", 1, 1, 1);

        public string Device => "cpu";

        public void Release() => _release.Release();

        public float[][] Embed(IReadOnlyList<RgbImage> images) => Embed(images, EmbeddingWorkload.Throughput);

        public float[][] Embed(IReadOnlyList<RgbImage> images, EmbeddingWorkload workload)
        {
            var firsts = images.Select(i => (float)i.Pixels[0]).ToArray();
            lock (Calls)
            {
                Calls.Add((workload, firsts));
            }

            if (HoldFirstCall && Interlocked.Increment(ref _calls) == 1)
            {
                _entered.Release();
                _release.Wait();
            }

            if (FailWhenFirstPixelIs is { } bad && firsts.Contains(bad))
            {
                throw new InvalidOperationException("The model failed.");
            }

            return firsts.Select(f => new[] { f }).ToArray();
        }

        public void Dispose()
        {
            _entered.Dispose();
            _release.Dispose();
        }
    }
}
