using ImageSearch.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace ImageSearch.Pipeline.IntegrationTests;

/// <summary>
/// Priorities of the process's kinds of work: threads at their nice values (read back from
/// /proc/self/task, not through the code under test), lanes that run work on their own threads,
/// and the embedded pipeline putting ingestion and the query model where PriorityOptions says.
/// </summary>
public sealed class PriorityTests : IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("priority-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    [Fact]
    public void A_thread_is_lowered_but_never_raised_and_the_threads_it_starts_inherit_its_level()
    {
        var level = ThreadNice.Below(7);
        var (own, child, afterRaise) = ThreadNice.RunOnNewThread(level, "nice-test", () =>
        {
            var self = ProcThreads.Nice(ThreadNice.CurrentThreadId);
            var childNice = -100;
            var t = new Thread(() => childNice = ProcThreads.Nice(ThreadNice.CurrentThreadId));
            t.Start();
            t.Join();
            Assert.True(ThreadNice.TryLowerCurrent(level - 3));
            return (self, childNice, ProcThreads.Nice(ThreadNice.CurrentThreadId));
        });

        Assert.Equal(level, own);
        Assert.Equal(level, child);
        Assert.Equal(level, afterRaise);
        Assert.Equal(ThreadNice.Process, ProcThreads.Nice(ThreadNice.CurrentThreadId));
    }

    [Fact]
    public void An_exception_on_the_new_thread_reaches_the_caller()
    {
        var error = Assert.Throws<InvalidDataException>(() => ThreadNice.RunOnNewThread<int>(ThreadNice.Below(1), "nice-test", () => throw new InvalidDataException("bad model")));
        Assert.Equal("bad model", error.Message);
    }

    [Fact]
    public async Task A_lane_runs_work_on_its_own_threads_at_its_level()
    {
        var level = ThreadNice.Below(5);
        using var lane = new PriorityLane("lane-test", 2, level);

        var ran = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => lane.RunAsync(() => (ThreadNice.CurrentThreadId, Environment.CurrentManagedThreadId))));

        Assert.All(ran, r => Assert.Contains(r.Item1, lane.ThreadIds));
        Assert.Equal(8, lane.Completed);
        Assert.All(lane.ThreadIds, tid => Assert.Equal((level, "lane-test"), (ProcThreads.Nice(tid), ProcThreads.Name(tid))));
        Assert.DoesNotContain(Environment.CurrentManagedThreadId, ran.Select(r => r.Item2));
    }

    [Fact]
    public async Task A_lane_completes_its_callers_tasks_from_a_thread_at_its_creators_level()
    {
        // Completing a task queues its continuations, and the pool may start a worker for them on
        // the completing thread, which would give that worker the lowered level for good. A
        // synchronization context sees who completes: the awaiting code's continuation is posted
        // to it by the completing thread. The item is held until the await has registered its
        // continuation (otherwise the awaiting thread would find the task done and post itself).
        using var lane = new PriorityLane("lane-test", 1, ThreadNice.Below(9));
        using var release = new ManualResetEventSlim();
        var context = new RecordingContext();
        var previous = SynchronizationContext.Current;
        SynchronizationContext.SetSynchronizationContext(context);
        Task<int> awaited;
        try
        {
            awaited = AwaitOnContext(lane, release);
        }
        finally
        {
            SynchronizationContext.SetSynchronizationContext(previous);
        }

        Assert.False(awaited.IsCompleted);
        release.Set();
        var (tid, nice) = await context.Posted.Task.WaitAsync(TimeSpan.FromMinutes(1));
        Assert.DoesNotContain(tid, lane.ThreadIds);
        Assert.Equal((lane.CompletionThreadId, ThreadNice.Process), (tid, nice));
        context.RunPosted();
        Assert.Equal(42, await awaited);

        static async Task<int> AwaitOnContext(PriorityLane lane, ManualResetEventSlim release) => await lane.RunAsync(() =>
        {
            release.Wait();
            return 42;
        });
    }

    [Fact]
    public async Task A_failing_item_fails_its_own_task_and_the_lane_goes_on()
    {
        using var lane = new PriorityLane("lane-test", 1, ThreadNice.Below(1));

        var failed = lane.RunAsync<int>(() => throw new InvalidOperationException("broken image"));
        var next = lane.RunAsync(() => 42);

        Assert.Equal("broken image", (await Assert.ThrowsAsync<InvalidOperationException>(() => failed)).Message);
        Assert.Equal(42, await next);
    }

    [Fact]
    public async Task Work_cancelled_while_it_waits_never_runs()
    {
        using var lane = new PriorityLane("lane-test", 1, ThreadNice.Below(1));
        using var hold = new ManualResetEventSlim();
        using var entered = new ManualResetEventSlim();
        using var cancel = new CancellationTokenSource();
        var ranCancelled = false;

        var first = lane.RunAsync(() =>
        {
            entered.Set();
            hold.Wait();
            return 1;
        });
        entered.Wait();
        var cancelled = lane.RunAsync(() => ranCancelled = true, cancel.Token);
        var kept = lane.RunAsync(() => 3);
        await cancel.CancelAsync();
        hold.Set();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled);
        Assert.Equal((1, 3), (await first, await kept));
        Assert.False(ranCancelled);
    }

    [Fact]
    public async Task Disposing_a_lane_finishes_its_queued_work_then_refuses_more()
    {
        var lane = new PriorityLane("lane-test", 1, ThreadNice.Below(1));
        using var hold = new ManualResetEventSlim();
        var first = lane.RunAsync(() => hold.Wait());
        var queued = lane.RunAsync(() => 2);
        hold.Set();
        lane.Dispose();
        lane.Dispose();

        await first;
        Assert.Equal(2, await queued);
        Assert.Throws<ObjectDisposedException>(() => { _ = lane.RunAsync(() => 3); });
    }

    [Fact]
    public async Task In_the_embedded_pipeline_ingestion_and_the_query_model_run_at_their_levels_and_requests_at_the_process_level()
    {
        var (library, paths) = TestData.MakeLibrary(root, 3);
        await using var host = await PipelineHost.StartAsync(PipelineRoles.All, library, Path.Combine(root, "db"), null,
            new Dictionary<string, string?> { ["Priority:QueryModel"] = "4" });
        var store = host.Services.GetRequiredService<IVectorStore>();
        await host.AnnounceAsync(library, paths);
        await TestData.UntilAsync(async () => await store.CountAsync() == paths.Length - 1, "every photo to be indexed");
        var search = host.Services.GetRequiredService<SearchService>();
        var hit = (await search.SearchAsync(new ImageQuery(await File.ReadAllBytesAsync(Path.Combine(library, paths[1]))))).Hits[0];
        Assert.Equal(TestData.IdOf(library, paths[1]), hit.Id);

        // The query model 4 levels below the process (the default is 0: a level of its own shows
        // that the setting reaches every model thread), ingestion 19 (the default).
        var process = ThreadNice.Process;
        var priorities = host.Services.GetRequiredService<WorkPriorities>();
        Assert.Equal(new WorkPriorities(Math.Min(process + 4, 19), 19), priorities);

        // Ingestion's decoding and model calls ran on the lane (3 photos, the copy's bytes are the first's: at least 3 decodes and a model call).
        var lane = host.Services.GetRequiredService<IngestionLane>().Lane;
        Assert.True(lane.Completed >= 4, $"the ingestion lane ran {lane.Completed} items");
        Assert.All(lane.ThreadIds, tid => Assert.Equal((priorities.IngestionNice, "ingest"), (ProcThreads.Nice(tid), ProcThreads.Name(tid))));

        // The query model: the queue's threads, and ONNX Runtime's intra-op thread of the latency
        // session, which inherits the name and level of the thread that created the session.
        var queue = host.Services.GetRequiredService<QueryEmbeddingQueue>();
        Assert.All(queue.HelperThreadIds.Prepend(queue.ThreadId), tid => Assert.Equal((priorities.QueryModelNice, "query-embedding"), (ProcThreads.Nice(tid), ProcThreads.Name(tid))));
        // (Other tests' hosts in this process have theirs too, at the default level.)
        var ortThreads = ProcThreads.All().Where(t => t.Name == "onnx-query" && t.Nice == priorities.QueryModelNice).ToList();
        Assert.True(ortThreads.Count >= Environment.ProcessorCount - 1, $"{ortThreads.Count} threads named onnx-query at nice {priorities.QueryModelNice}");

        // The thread that handled the search (this test's) keeps the process's level.
        Assert.Equal(process, ProcThreads.Nice(ThreadNice.CurrentThreadId));
    }

    [Fact]
    public void Levels_outside_0_to_19_are_refused_at_start_with_the_setting_named()
    {
        var (library, _) = TestData.MakeLibrary(root, 1);
        using var host = PipelineHost.Build(PipelineRoles.All, library, Path.Combine(root, "db"), null,
            new Dictionary<string, string?> { ["Priority:QueryModel"] = "20", ["Priority:Ingestion"] = "-1" });

        var error = Assert.Throws<OptionsValidationException>(() => host.Services.GetRequiredService<IOptions<PriorityOptions>>().Value);
        Assert.Contains(error.Failures, f => f.Contains(nameof(PriorityOptions.QueryModel), StringComparison.Ordinal) && f.Contains("19", StringComparison.Ordinal));
        Assert.Contains(error.Failures, f => f.Contains(nameof(PriorityOptions.Ingestion), StringComparison.Ordinal));
    }

    /// <summary>Records the first thread that posts to it and keeps the posted callback to run later.</summary>
    private sealed class RecordingContext : SynchronizationContext
    {
        private (SendOrPostCallback Callback, object? State)? _posted;

        public TaskCompletionSource<(int Tid, int Nice)> Posted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public override void Post(SendOrPostCallback d, object? state)
        {
            _posted = (d, state);
            var tid = ThreadNice.CurrentThreadId;
            Posted.TrySetResult((tid, ProcThreads.Nice(tid)));
        }

        public void RunPosted() => _posted!.Value.Callback(_posted.Value.State);
    }

    /// <summary>The process's threads as Linux reports them.</summary>
    private static class ProcThreads
    {
        public static IEnumerable<(int Tid, string Name, int Nice)> All()
        {
            foreach (var dir in Directory.GetDirectories("/proc/self/task"))
            {
                var tid = int.Parse(Path.GetFileName(dir), System.Globalization.CultureInfo.InvariantCulture);
                (string, int)? thread;
                try
                {
                    thread = (Name(tid), Nice(tid));
                }
                catch (IOException)
                {
                    thread = null; // ended meanwhile
                }

                if (thread is { } t)
                {
                    yield return (tid, t.Item1, t.Item2);
                }
            }
        }

        public static string Name(int tid) => File.ReadAllText($"/proc/self/task/{tid}/comm").TrimEnd('\n');

        /// <summary>Field 19 of /proc/.../stat; the name (field 2) may hold spaces, so fields are counted after its closing parenthesis.</summary>
        public static int Nice(int tid)
        {
            var stat = File.ReadAllText($"/proc/self/task/{tid}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return int.Parse(fields[19 - 3], System.Globalization.CultureInfo.InvariantCulture);
        }
    }
}
