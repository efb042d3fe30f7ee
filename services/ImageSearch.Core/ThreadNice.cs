using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;

namespace ImageSearch.Core;

/// <summary>
/// The Linux scheduling priority ("nice" value, 0 to 19 for an unprivileged process) of single
/// threads. Linux keeps a nice value per thread, and a thread inherits its creator's, so a thread
/// lowered here also lowers every thread it starts later (ONNX Runtime's intra-op pool, for one).
/// A thread's nice can always be raised (made lower priority) but not brought back without
/// CAP_SYS_NICE: work that must run at a lower priority gets threads of its own
/// (<see cref="PriorityLane"/>) rather than borrowing the runtime's pool threads.
/// </summary>
/// <remarks>
/// Only ordering among the process's own threads is meant: under systemd, docker or a desktop
/// session's autogroup each service has its own CPU group, and nice values compete within it.
/// On other systems every call reports "not supported" and changes nothing.
/// </remarks>
public static partial class ThreadNice
{
    /// <summary>The largest nice value (lowest priority) Linux allows.</summary>
    public const int Lowest = 19;

    private const int PrioProcess = 0;

    private static readonly bool s_supported = OperatingSystem.IsLinux() && Probe();

    /// <summary>True where per-thread nice values exist (Linux with glibc 2.30 or later, which exports gettid).</summary>
    public static bool Supported => s_supported;

    /// <summary>The nice value of the process's main thread, which every other level here is relative to.</summary>
    public static int Process => Supported ? Get(Environment.ProcessId) : 0;

    /// <summary>The nice value of the calling thread (0 where not supported).</summary>
    public static int Current => Supported ? Get(gettid()) : 0;

    /// <summary>The calling thread's operating-system id (its Linux tid; 0 where not supported).</summary>
    public static int CurrentThreadId => Supported ? gettid() : 0;

    /// <summary>
    /// The nice value <paramref name="increment"/> levels below the process's own priority, at most
    /// <see cref="Lowest"/>.
    /// </summary>
    public static int Below(int increment) => Math.Clamp(Process + Math.Max(0, increment), -20, Lowest);

    /// <summary>
    /// Lowers the calling thread to nice <paramref name="nice"/> (never raises it: a thread already
    /// at that level or lower stays). False when not supported or refused; the thread is unchanged then.
    /// </summary>
    public static bool TryLowerCurrent(int nice)
    {
        if (!Supported)
        {
            return false;
        }

        var tid = gettid();
        var current = Get(tid);
        if (current >= nice)
        {
            return true;
        }

        return setpriority(PrioProcess, tid, Math.Min(nice, Lowest)) == 0;
    }

    /// <summary>
    /// Runs <paramref name="work"/> on a new thread named <paramref name="name"/> lowered to nice
    /// <paramref name="nice"/> and waits for it: whatever threads <paramref name="work"/> starts
    /// inherit that level. Exceptions are rethrown here with their original stack.
    /// </summary>
    public static T RunOnNewThread<T>(int nice, string name, Func<T> work)
    {
        ArgumentNullException.ThrowIfNull(work);
        T result = default!;
        ExceptionDispatchInfo? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                TryLowerCurrent(nice);
                result = work();
            }
            catch (Exception e)
            {
                failure = ExceptionDispatchInfo.Capture(e);
            }
        })
        { IsBackground = true, Name = name };
        thread.Start();
        thread.Join();
        failure?.Throw();
        return result;
    }

    private static bool Probe()
    {
        try
        {
            return gettid() > 0;
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return false;
        }
    }

    private static int Get(int tid)
    {
        // getpriority may return -1 for nice -1, so errno tells failures apart; the generated
        // marshalling clears it before the call.
        var value = getpriority(PrioProcess, tid);
        return value == -1 && Marshal.GetLastPInvokeError() != 0 ? 0 : value;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int getpriority(int which, int who);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setpriority(int which, int who, int prio);

    [LibraryImport("libc")]
    private static partial int gettid();
}
