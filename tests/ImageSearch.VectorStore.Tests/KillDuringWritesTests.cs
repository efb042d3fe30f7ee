using System.Diagnostics;
using System.Globalization;
using ImageSearch.Core;

namespace ImageSearch.VectorStore.Tests;

/// <summary>
/// The process that owns an embedded store is killed with SIGKILL while it writes, again and again
/// (<see cref="CrashWriter"/> writes without pause: upserts of new points, new versions of live
/// points, deletes; snapshots every 5 changes). After every restart the store opens; at the end
/// every acknowledged write is there (every acknowledged point searchable by its vector, at its
/// acknowledged version; no acknowledged delete undone), nothing is duplicated, and only a write
/// in flight at a kill may or may not have happened.
/// </summary>
public sealed class KillDuringWritesTests(Xunit.Abstractions.ITestOutputHelper output) : IDisposable
{
    /// <summary>25 in the suite; IMAGESEARCH_CRASH_KILLS=500 for a long run (docs/RELIABILITY.md).</summary>
    private static readonly int Kills = int.TryParse(Environment.GetEnvironmentVariable("IMAGESEARCH_CRASH_KILLS"), out var n) && n > 0 ? n : 25;
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public async Task Every_acknowledged_write_survives_repeated_kills_and_nothing_is_duplicated()
    {
        var model = new Model();
        var rng = new Random(5);
        var first = 0;
        for (var kill = 0; kill < Kills; kill++)
        {
            // Each run continues numbering where the last one's announced writes stopped.
            first = await RunAndKillAsync(kill, first, acks: 2 + rng.Next(30), model);
        }

        using var store = new EmbeddedVectorStore(CrashWriter.Options(_temp.Path), CrashWriter.Model);
        var present = CrashWriter.ReadLive(store).ToList();
        Assert.Equal(present.Count, present.Select(p => p.N).Distinct().Count());
        Assert.Equal(present.Count, await store.CountAsync());
        Assert.Equal(present.Count, store.GraphLiveCount);
        model.Check(present.ToDictionary(p => p.N, p => p.Version));

        // Every point is found first by its own vector through the HNSW graph (ExactThreshold = 1).
        foreach (var (n, version) in present)
        {
            var hits = await store.SearchAsync(TestData.Vector(n, CrashWriter.Dimensions, version), new VectorQuery(3));
            Assert.Equal(TestData.Id(n), hits[0].Id);
            Assert.True(hits[0].Score > 0.999f, $"point {n}: score {hits[0].Score}");
            Assert.Equal(hits.Count, hits.Select(h => h.Id).Distinct().Count());
        }

        Assert.True(model.Acknowledged > Kills * 2, $"only {model.Acknowledged} writes were acknowledged");
        output.WriteLine($"{Kills} kills, {model.Acknowledged} acknowledged writes, {model.Uncertain} writes in flight at a kill, {present.Count} points at the end, all found first by their own vector");
    }

    /// <summary>
    /// Starts the writer (checking what it opened against the model), waits for <paramref name="acks"/>
    /// acknowledgements, SIGKILLs it; returns the next free point number.
    /// </summary>
    private async Task<int> RunAndKillAsync(int run, int first, int acks, Model model)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { typeof(CrashWriter).Assembly.Location, "crash-writer", _temp.Path, (1000 + run).ToString(CultureInfo.InvariantCulture), first.ToString(CultureInfo.InvariantCulture) })
        {
            psi.ArgumentList.Add(a);
        }

        using var process = Process.Start(psi)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var next = first;
        var seen = 0;
        void Handle(string line)
        {
            var space = line.IndexOf(' ', StringComparison.Ordinal);
            var (kind, op) = space < 0 ? (line, "") : (line[..space], line[(space + 1)..]);
            switch (kind)
            {
                case "OPEN":
                    var opened = int.Parse(op, CultureInfo.InvariantCulture);
                    Assert.True(model.MayHaveCount(opened), $"run {run} opened with {opened} points; the model allows {model.Describe()}");
                    break;
                case "BEGIN":
                    model.Begin(op);
                    next = Math.Max(next, model.HighestNumber + 1);
                    break;
                case "ACK":
                    model.Ack(op);
                    seen++;
                    break;
            }
        }

        using var deadline = new CancellationTokenSource(TimeSpan.FromMinutes(3)); // bounds a broken run only
        try
        {
            while (seen < acks)
            {
                Handle(await process.StandardOutput.ReadLineAsync(deadline.Token) ?? throw new InvalidOperationException($"run {run}: the writer exited: {await stderr}"));
            }
        }
        finally
        {
            process.Kill(); // SIGKILL, whatever the writer is doing: mid-commit, mid-snapshot, mid-apply
            await process.WaitForExitAsync();
        }

        // What it wrote before it died is still in the pipe: acknowledgements the test had not read yet.
        var rest = await process.StandardOutput.ReadToEndAsync();
        foreach (var line in rest.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith("BEGIN ", StringComparison.Ordinal) || line.StartsWith("ACK ", StringComparison.Ordinal))
            {
                Handle(line);
            }
        }

        model.Killed();
        return next;
    }

    /// <summary>What the store must hold: acknowledged state per point, plus the writes in flight at a kill (which may or may not have landed).</summary>
    private sealed class Model
    {
        private readonly Dictionary<int, int> acked = [];
        private readonly HashSet<int> deleted = [];
        private readonly Dictionary<int, HashSet<int?>> uncertain = [];
        private string? inFlight;

        public int Acknowledged { get; private set; }

        public int Uncertain { get; private set; }

        public int HighestNumber { get; private set; } = -1;

        public void Begin(string op)
        {
            inFlight = op;
            foreach (var (n, _) in Parse(op))
            {
                HighestNumber = Math.Max(HighestNumber, n);
            }
        }

        public void Ack(string op)
        {
            Assert.Equal(inFlight, op);
            inFlight = null;
            Acknowledged++;
            foreach (var (n, version) in Parse(op))
            {
                uncertain.Remove(n); // an acknowledged write settles whatever a crash left open
                if (version is { } v)
                {
                    acked[n] = v;
                    deleted.Remove(n);
                }
                else
                {
                    acked.Remove(n);
                    deleted.Add(n);
                }
            }
        }

        /// <summary>The write in flight at the kill may have committed or not.</summary>
        public void Killed()
        {
            if (inFlight is null)
            {
                return;
            }

            Uncertain++;
            foreach (var (n, version) in Parse(inFlight))
            {
                var options = uncertain.TryGetValue(n, out var known) ? known : [acked.TryGetValue(n, out var a) ? a : null];
                options.Add(version);
                uncertain[n] = options;
            }

            inFlight = null;
        }

        public bool MayHaveCount(int count)
        {
            var sure = acked.Keys.Count(n => !uncertain.ContainsKey(n));
            var maybe = uncertain.Values.Count(o => o.Any(v => v is not null));
            var certainlyThere = uncertain.Values.Count(o => o.All(v => v is not null));
            return count >= sure + certainlyThere && count <= sure + maybe;
        }

        public string Describe() => $"{acked.Count} acknowledged points, {uncertain.Count} uncertain";

        public void Check(Dictionary<int, int> present)
        {
            foreach (var (n, version) in acked.Where(a => !uncertain.ContainsKey(a.Key)))
            {
                Assert.True(present.TryGetValue(n, out var got), $"acknowledged point {n} (version {version}) is missing");
                Assert.True(got == version, $"point {n}: version {got}, acknowledged {version}");
            }

            foreach (var n in deleted.Where(d => !uncertain.ContainsKey(d)))
            {
                Assert.False(present.ContainsKey(n), $"point {n} was deleted (acknowledged) but is back");
            }

            foreach (var (n, version) in present)
            {
                var allowed = uncertain.TryGetValue(n, out var options) ? options : acked.TryGetValue(n, out var a) ? [a] : [];
                Assert.True(allowed.Contains(version), $"point {n} at version {version} was never acknowledged nor in flight at a kill");
            }
        }

        /// <summary>(n, version) for upserts; (n, null) for deletes.</summary>
        private static IEnumerable<(int N, int? Version)> Parse(string op)
        {
            var list = op[(op.IndexOf(' ', StringComparison.Ordinal) + 1)..].Split(',');
            return op.StartsWith("upsert", StringComparison.Ordinal)
                ? list.Select(p => p.Split(':')).Select(p => (int.Parse(p[0], CultureInfo.InvariantCulture), (int?)int.Parse(p[1], CultureInfo.InvariantCulture)))
                : list.Select(p => (int.Parse(p, CultureInfo.InvariantCulture), (int?)null));
        }
    }
}
