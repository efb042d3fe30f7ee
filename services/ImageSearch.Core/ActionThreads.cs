using System.Collections.Concurrent;

namespace ImageSearch.Core;

/// <summary>
/// Threads of their own that run the actions posted to them, first come first served, optionally
/// lowered to one nice value (<see cref="ThreadNice"/>); otherwise at the level of the thread that
/// created them. <see cref="PriorityLane"/> runs its work on such threads, and lowered threads
/// complete their callers' tasks through a single one at the creator's level (see there why).
/// </summary>
public sealed class ActionThreads : IDisposable
{
    private readonly BlockingCollection<Action> _actions = new(new ConcurrentQueue<Action>());
    private readonly Thread[] _threads;
    private readonly int[] _threadIds;
    private int _disposed;

    /// <summary>
    /// Starts <paramref name="threads"/> background threads named <paramref name="name"/>, each lowered
    /// to <paramref name="nice"/> when one is given, and returns once they all run.
    /// </summary>
    public ActionThreads(string name, int threads = 1, int? nice = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        Name = name;
        _threadIds = new int[threads];
        _threads = new Thread[threads];
        using var started = new CountdownEvent(threads);
        for (var i = 0; i < threads; i++)
        {
            var index = i;
            _threads[i] = new Thread(() =>
            {
                if (nice is { } level)
                {
                    ThreadNice.TryLowerCurrent(level);
                }

                _threadIds[index] = ThreadNice.CurrentThreadId;
                started.Signal();
                foreach (var action in _actions.GetConsumingEnumerable())
                {
                    action();
                }
            })
            { IsBackground = true, Name = name };
            _threads[i].Start();
        }

        started.Wait();
    }

    /// <summary>The threads' name.</summary>
    public string Name { get; }

    /// <summary>The threads' operating-system ids (Linux tids; 0 where unknown).</summary>
    public IReadOnlyList<int> ThreadIds => _threadIds;

    /// <summary>Runs <paramref name="action"/> on one of the threads (it must handle its own exceptions).</summary>
    /// <exception cref="ObjectDisposedException">Disposed.</exception>
    public void Post(Action action)
    {
        ArgumentNullException.ThrowIfNull(action);
        try
        {
            _actions.Add(action);
        }
        catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException)
        {
            throw new ObjectDisposedException(nameof(ActionThreads), $"The '{Name}' threads were disposed.");
        }
    }

    /// <summary>Runs what was posted, then ends the threads.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _actions.CompleteAdding();
        foreach (var thread in _threads)
        {
            thread.Join();
        }

        _actions.Dispose();
    }
}
