using System.Collections.Concurrent;

namespace ImageSearch.Core;

/// <summary>
/// A fixed set of threads of its own, lowered to one nice value (<see cref="ThreadNice"/>), that run
/// the work handed to <see cref="RunAsync{T}"/> first come first served. CPU work that should give
/// way to other work of the process (ingestion to searches) runs here, since the runtime's pool
/// threads cannot be lowered and brought back.
/// </summary>
/// <remarks>
/// Work items must not wait on other items of the same lane (they would hold its threads). A waiting
/// caller holds no thread. Callers' tasks are completed from a <see cref="CompletionRelay"/> at the
/// level of the thread that created the lane, never from the lowered threads (see there why).
/// Disposing lets the queued items finish, then ends the threads.
/// </remarks>
public sealed class PriorityLane : IDisposable
{
    private readonly BlockingCollection<Action> _work = new(new ConcurrentQueue<Action>());
    private readonly Thread[] _threads;
    private readonly CompletionRelay _relay;
    private readonly int[] _threadIds;
    private long _completed;
    private int _disposed;

    /// <summary>Starts <paramref name="threads"/> background threads named <paramref name="name"/> at nice <paramref name="nice"/>.</summary>
    public PriorityLane(string name, int threads, int nice)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        Name = name;
        Nice = nice;
        _threadIds = new int[threads];
        _relay = new CompletionRelay(name + "-done");
        using var started = new CountdownEvent(threads);
        _threads = new Thread[threads];
        for (var i = 0; i < threads; i++)
        {
            var index = i;
            _threads[i] = new Thread(() => Run(index, started)) { IsBackground = true, Name = name };
            _threads[i].Start();
        }

        started.Wait();
    }

    /// <summary>The threads' name.</summary>
    public string Name { get; }

    /// <summary>The nice value asked for (the threads' actual one where <see cref="ThreadNice.Supported"/>).</summary>
    public int Nice { get; }

    /// <summary>Number of threads.</summary>
    public int Threads => _threads.Length;

    /// <summary>The threads' operating-system ids (Linux tids; 0 where unknown).</summary>
    public IReadOnlyList<int> ThreadIds => _threadIds;

    /// <summary>The id of the thread that completes callers' tasks (see <see cref="CompletionRelay"/>).</summary>
    public int CompletionThreadId => _relay.ThreadId;

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
                _relay.Post(() => result.TrySetException(e));
                return;
            }

            Interlocked.Increment(ref _completed);
            _relay.Post(() => result.TrySetResult(value));
        }

        try
        {
            _work.Add(Item, CancellationToken.None);
        }
        catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException)
        {
            registration.Dispose();
            throw new ObjectDisposedException(nameof(PriorityLane), $"The '{Name}' lane was disposed.");
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
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _work.CompleteAdding();
        foreach (var thread in _threads)
        {
            thread.Join();
        }

        _relay.Dispose();
        _work.Dispose();
    }

    private void Run(int index, CountdownEvent started)
    {
        ThreadNice.TryLowerCurrent(Nice);
        _threadIds[index] = ThreadNice.CurrentThreadId;
        started.Signal();
        foreach (var item in _work.GetConsumingEnumerable())
        {
            item();
        }
    }
}
