using System.Collections.Concurrent;

namespace ImageSearch.Core;

/// <summary>
/// A thread of its own, at the level of the thread that created the relay, that runs the short
/// actions posted to it in order: lowered threads (<see cref="PriorityLane"/>) complete their
/// callers' tasks through it. Completing a task queues its continuations to the runtime's pool,
/// and when the pool needs another worker for them, the thread that queued them starts it; Linux
/// gives a new thread its creator's nice value, so a pool worker started by a lowered thread would
/// serve requests at that low level for the rest of its life.
/// </summary>
public sealed class CompletionRelay : IDisposable
{
    private readonly BlockingCollection<Action> _actions = new(new ConcurrentQueue<Action>());
    private readonly Thread _thread;
    private int _disposed;

    /// <summary>Starts the relay's thread, named <paramref name="name"/>.</summary>
    public CompletionRelay(string name)
    {
        _thread = new Thread(Run) { IsBackground = true, Name = name };
        _thread.Start();
    }

    /// <summary>The relay thread's operating-system id (Linux tid; 0 until it started or where unknown).</summary>
    public int ThreadId { get; private set; }

    /// <summary>Runs <paramref name="action"/> on the relay's thread (it must not block or throw).</summary>
    /// <exception cref="ObjectDisposedException">The relay was disposed.</exception>
    public void Post(Action action)
    {
        try
        {
            _actions.Add(action);
        }
        catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException)
        {
            throw new ObjectDisposedException(nameof(CompletionRelay), "The completion relay was disposed.");
        }
    }

    /// <summary>Runs what was posted, then ends the thread.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _actions.CompleteAdding();
        _thread.Join();
        _actions.Dispose();
    }

    private void Run()
    {
        ThreadId = ThreadNice.CurrentThreadId;
        foreach (var action in _actions.GetConsumingEnumerable())
        {
            action();
        }
    }
}
