using System.Runtime.ExceptionServices;
using System.Threading.Channels;
using ImageSearch.Core;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace ImageSearch.Pipeline;

/// <summary>
/// Runs the model for queries one call at a time, on a thread of its own, and gathers the queries
/// that arrive while a call runs into the next call (dynamic batching, first come first served).
/// </summary>
/// <remarks>
/// Concurrent queries used to call the model each on its own thread-pool thread: on a 2-core machine
/// four of them meant four all-core model runs fighting over two cores (every operator waits for its
/// slowest thread) and four blocked pool threads, so requests queued for threads the pool adds only
/// slowly; the p99 under 4 clients was 3x the p50 (docs/BENCHMARKS.md). Here a waiting query holds
/// no thread, a run has the cores to itself, and a query waits at most for the run in progress plus
/// its own. A single query on an idle queue starts at once, on the all-core latency session. A call
/// with many images (a batch of queries, region windows) is split into one share per core on the
/// throughput session, as ingestion runs them. The queue's thread, and the helper threads that run
/// the other shares, run at <see cref="WorkPriorities.QueryModelNice"/> (the process's own level by
/// default; see <see cref="PriorityOptions"/>), above ingestion's threads.
/// </remarks>
public sealed class QueryEmbeddingQueue : IDisposable
{
    private readonly IEmbedder _embedder;
    private readonly ILogger _logger;
    private readonly int _maxImages;
    private readonly int _cores;
    private readonly Channel<Request> _requests = Channel.CreateUnbounded<Request>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Thread _thread;
    private readonly int _nice;
    private readonly PriorityLane? _helpers;
    private readonly ActionThreads _relay = new("query-done");
    private Request? _carried;
    private long _runs;
    private long _batched;

    public QueryEmbeddingQueue(IEmbedder embedder, IOptions<SearchOptions> options, WorkPriorities priorities, ILogger<QueryEmbeddingQueue>? logger = null)
        : this(embedder, options.Value.MaxEmbeddingBatch, Environment.ProcessorCount, logger, priorities?.QueryModelNice)
    {
    }

    /// <summary>
    /// A queue whose runs take at most <paramref name="maxImages"/> images, splitting larger calls over
    /// <paramref name="cores"/> shares, on threads at nice <paramref name="nice"/> (null: the creating thread's level).
    /// </summary>
    public QueryEmbeddingQueue(IEmbedder embedder, int maxImages, int cores, ILogger? logger = null, int? nice = null)
    {
        ArgumentNullException.ThrowIfNull(embedder);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxImages, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(cores, 1);
        _embedder = embedder;
        _maxImages = maxImages;
        _cores = cores;
        _logger = logger ?? NullLogger.Instance;
        _nice = nice ?? ThreadNice.Current;
        _helpers = cores > 1 ? new PriorityLane("query-embedding", cores - 1, _nice) : null;
        _thread = new Thread(Run) { IsBackground = true, Name = "query-embedding" };
        _thread.Start();
    }

    /// <summary>The queue's thread's id (Linux tid; 0 until it started or where unknown).</summary>
    public int ThreadId { get; private set; }

    /// <summary>The helper threads' ids (empty with one core).</summary>
    public IReadOnlyList<int> HelperThreadIds => _helpers?.ThreadIds ?? [];

    /// <summary>Model calls made so far, and how many of them served more than one request.</summary>
    public (long Runs, long Batched) Counts => (Interlocked.Read(ref _runs), Interlocked.Read(ref _batched));

    /// <summary>Embeds <paramref name="images"/> (already prepared to the model's input) in the order given.</summary>
    /// <exception cref="ObjectDisposedException">The queue was disposed.</exception>
    public Task<float[][]> EmbedAsync(IReadOnlyList<RgbImage> images, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.Count == 0)
        {
            return Task.FromResult(Array.Empty<float[]>());
        }

        var request = new Request(images, ct);
        if (!_requests.Writer.TryWrite(request))
        {
            throw new ObjectDisposedException(nameof(QueryEmbeddingQueue));
        }

        return request.Result;
    }

    public void Dispose()
    {
        if (_requests.Writer.TryComplete())
        {
            _thread.Join();
            _helpers?.Dispose();
            _relay.Dispose();
        }
    }

    private void Run()
    {
        ThreadNice.TryLowerCurrent(_nice);
        ThreadId = ThreadNice.CurrentThreadId;
        var reader = _requests.Reader;
        var batch = new List<Request>();
        while (true)
        {
            batch.Clear();
            if (!Take(reader, batch))
            {
                return;
            }

            var images = batch.SelectMany(r => r.Images).ToArray();
            try
            {
                var vectors = Embed(images);
                var next = 0;
                foreach (var request in batch)
                {
                    // Completed from the relay: this thread may be lowered (see PriorityLane's remarks).
                    var own = vectors.AsSpan(next, request.Images.Count).ToArray();
                    _relay.Post(() => request.Complete(own));
                    next += request.Images.Count;
                }
            }
            catch (Exception e)
            {
                // Every request of the run gets the failure (its images were checked when prepared,
                // so a failure here is the model's, not one query's); the queue goes on.
                _logger.LogError(e, "Embedding {Count} query images failed", images.Length);
                foreach (var request in batch)
                {
                    _relay.Post(() => request.Fail(e));
                }
            }

            Interlocked.Increment(ref _runs);
            if (batch.Count > 1)
            {
                Interlocked.Increment(ref _batched);
            }
        }
    }

    /// <summary>
    /// Waits for the next live request, then adds the others already waiting while the run stays
    /// within <see cref="_maxImages"/> (a request is never split; one larger than that runs alone).
    /// False when the queue is closed and drained.
    /// </summary>
    private bool Take(ChannelReader<Request> reader, List<Request> batch)
    {
        var images = 0;
        while (true)
        {
            Request? request;
            if (_carried is not null)
            {
                request = _carried;
                _carried = null;
            }
            else if (!reader.TryRead(out request))
            {
                if (batch.Count > 0)
                {
                    return true;
                }

                if (!reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
                {
                    return false;
                }

                continue;
            }

            if (!request.Start())
            {
                continue; // cancelled while it waited
            }

            if (batch.Count > 0 && images + request.Images.Count > _maxImages)
            {
                _carried = request;
                return true;
            }

            batch.Add(request);
            images += request.Images.Count;
        }
    }

    private float[][] Embed(RgbImage[] images)
    {
        var shares = Math.Min(_cores, images.Length / 2);
        if (shares <= 1)
        {
            return _embedder.Embed(images, EmbeddingWorkload.Latency);
        }

        // Share 0 on this thread, the others on the helpers (same level): pool threads would run
        // them at the requests' priority.
        var vectors = new float[images.Length][];
        void Share(int s)
        {
            var from = images.Length * s / shares;
            var to = images.Length * (s + 1) / shares;
            _embedder.Embed(images[from..to], EmbeddingWorkload.Throughput).CopyTo(vectors, from);
        }

        var others = Enumerable.Range(1, shares - 1).Select(s => _helpers!.RunAsync(() => Share(s))).ToArray();
        Exception? first = null;
        try
        {
            Share(0);
        }
        catch (Exception e)
        {
            first = e;
        }

        try
        {
            Task.WaitAll(others);
        }
        catch (AggregateException e)
        {
            first ??= e.InnerExceptions[0];
        }

        if (first is not null)
        {
            ExceptionDispatchInfo.Throw(first);
        }

        return vectors;
    }

    private sealed class Request
    {
        private readonly TaskCompletionSource<float[][]> _result = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly CancellationTokenRegistration _registration;

        public Request(IReadOnlyList<RgbImage> images, CancellationToken ct)
        {
            Images = images;
            if (ct.CanBeCanceled)
            {
                _registration = ct.Register(() => _result.TrySetCanceled(ct));
            }
        }

        public IReadOnlyList<RgbImage> Images { get; }

        public Task<float[][]> Result => _result.Task;

        /// <summary>False when the caller gave up before the run began; from here on the run's outcome counts.</summary>
        public bool Start()
        {
            _registration.Dispose();
            return !_result.Task.IsCompleted;
        }

        public void Complete(float[][] vectors) => _result.TrySetResult(vectors);

        public void Fail(Exception e) => _result.TrySetException(e);
    }
}
