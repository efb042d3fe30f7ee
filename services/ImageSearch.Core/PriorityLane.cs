namespace ImageSearch.Core;

/// <summary>
/// A fixed set of threads of its own, lowered to one nice value (<see cref="ThreadNice"/>), that run
/// the work handed to <see cref="RunAsync{T}"/> first come first served. CPU work that should give
/// way to other work of the process (ingestion to searches) runs here, since the runtime's pool
/// threads cannot be lowered and brought back.
/// </summary>
/// <remarks>
/// Work items must not wait on other items of the same lane (they would hold its threads). A waiting
/// caller holds no thread. Callers' tasks are completed from one more thread, at the level of the
/// thread that created the lane, never from the lowered ones: completing a task queues its
/// continuations to the runtime's pool, and when the pool needs another worker for them, the thread
/// that queued them starts it; Linux gives a new thread its creator's nice value, so a pool worker
/// started by a lowered thread would serve requests at that level for the rest of its life.
/// Disposing lets the queued items finish, then ends the threads.
/// </remarks>
public sealed class PriorityLane : IDisposable
{
    private readonly ActionThreads _workers;
    private readonly ActionThreads _completions;
    private long _completed;

    /// <summary>Starts <paramref name="threads"/> background threads named <paramref name="name"/> at nice <paramref name="nice"/>.</summary>
    public PriorityLane(string name, int threads, int nice)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        _completions = new ActionThreads(name + "-done");
        _workers = new ActionThreads(name, threads, nice);
    }

    /// <summary>The threads' operating-system ids (Linux tids; 0 where unknown).</summary>
    public IReadOnlyList<int> ThreadIds => _workers.ThreadIds;

    /// <summary>The id of the thread that completes callers' tasks.</summary>
    public int CompletionThreadId => _completions.ThreadIds[0];

    /// <summary>Work items run so far (counted before their callers' tasks complete).</summary>
    public long Completed => Interlocked.Read(ref _completed);

    /// <summary>
    /// Runs <paramref name="work"/> on one of the lane's threads. A token cancelled before the item
    /// starts cancels it; once started it runs to the end.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The lane was disposed.</exception>
    public Task<T> RunAsync<T>(Func<T> work, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(work);
        var result = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        var registration = ct.CanBeCanceled ? ct.Register(() => result.TrySetCanceled(ct)) : default;
        void Item()
        {
            registration.Dispose();
            if (result.Task.IsCompleted)
            {
                return;
            }

            T value;
            try
            {
                value = work();
            }
            catch (Exception e)
            {
                Interlocked.Increment(ref _completed);
                _completions.Post(() => result.TrySetException(e));
                return;
            }

            Interlocked.Increment(ref _completed);
            _completions.Post(() => result.TrySetResult(value));
        }

        try
        {
            _workers.Post(Item);
        }
        catch (ObjectDisposedException)
        {
            registration.Dispose();
            throw;
        }

        return result.Task;
    }

    /// <inheritdoc cref="RunAsync{T}(Func{T}, CancellationToken)"/>
    public Task RunAsync(Action work, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(work);
        return RunAsync<bool>(() =>
        {
            work();
            return true;
        }, ct);
    }

    public void Dispose()
    {
        // Workers first: their last items post completions.
        _workers.Dispose();
        _completions.Dispose();
    }
}
