using System.Globalization;
using ImageSearch.Core;

namespace ImageSearch.VectorStore.Tests;

/// <summary>
/// The entry point of this test assembly when it is run as a program (<c>dotnet
/// ImageSearch.VectorStore.Tests.dll crash-writer DIR SEED FIRST</c>): a process that owns an
/// embedded store and writes to it without pause until it is killed, for
/// <see cref="KillDuringWritesTests"/>. The test runner never calls it.
/// </summary>
/// <remarks>
/// Protocol on stdout, one line per event, flushed: <c>OPEN count</c> once the store is open;
/// <c>BEGIN op</c> before each write and <c>ACK op</c> once it returned (acknowledged = durable).
/// Ops: <c>upsert n:v,n:v,...</c> (point n at version v; new points and new versions of live
/// points), <c>delete n,n,...</c>. The parent keeps the model of what must be there.
/// </remarks>
public static class CrashWriter
{
    public const int Dimensions = 24;

    /// <summary>Settings that put snapshot saves and HNSW searches (not the exact scan) in the way of every kill.</summary>
    public static EmbeddedStoreOptions Options(string directory) => new() { Directory = directory, SnapshotEvery = 5, ExactThreshold = 1, M = 8, EfConstruction = 40 };

    public static EmbeddingModelInfo Model { get; } = new("crash", "1", Dimensions, 8, 8);

    public static int Main(string[] args)
    {
        if (args is not ["crash-writer", var directory, var seedText, var firstText])
        {
            Console.Error.WriteLine("usage: crash-writer DIR SEED FIRST (this assembly is a test assembly; the test runner does not use this entry point)");
            return 2;
        }

        var rng = new Random(int.Parse(seedText, CultureInfo.InvariantCulture));
        var next = int.Parse(firstText, CultureInfo.InvariantCulture);
        using var store = new EmbeddedVectorStore(Options(directory), Model);
        var live = new Dictionary<int, int>();
        foreach (var (n, version) in ReadLive(store))
        {
            live[n] = version;
        }

        Emit($"OPEN {live.Count}");
        while (true)
        {
            if (live.Count > 10 && rng.Next(8) == 0)
            {
                var victims = live.Keys.OrderBy(_ => rng.Next()).Take(1 + rng.Next(3)).ToList();
                var op = "delete " + string.Join(',', victims);
                Emit("BEGIN " + op);
                store.DeleteAsync([.. victims.Select(TestData.Id)]).GetAwaiter().GetResult();
                Emit("ACK " + op);
                victims.ForEach(v => live.Remove(v));
                continue;
            }

            var batch = new List<(int N, int Version)>();
            for (var k = 1 + rng.Next(6); k > 0; k--)
            {
                if (live.Count > 0 && rng.Next(5) == 0)
                {
                    var (n, version) = live.ElementAt(rng.Next(live.Count));
                    batch.Add((n, version + 1)); // a changed image: a new vector for a live point
                }
                else
                {
                    batch.Add((next++, 0));
                }
            }

            batch = [.. batch.DistinctBy(b => b.N)];
            var upsert = "upsert " + string.Join(',', batch.Select(b => $"{b.N}:{b.Version}"));
            Emit("BEGIN " + upsert);
            store.UpsertAsync([.. batch.Select(b => TestData.Record(b.N, Dimensions, b.Version))]).GetAwaiter().GetResult();
            Emit("ACK " + upsert);
            batch.ForEach(b => live[b.N] = b.Version);
        }
    }

    /// <summary>Point number and version of every point in the store (from their payloads).</summary>
    internal static IEnumerable<(int N, int Version)> ReadLive(EmbeddedVectorStore store)
    {
        // The store has no "list all"; an exact search of any unit vector with Top = count returns every point.
        var count = (int)store.CountAsync().GetAwaiter().GetResult();
        if (count == 0)
        {
            return [];
        }

        var probe = new float[Dimensions];
        probe[0] = 1;
        return store.SearchAsync(probe, new VectorQuery(count, Exact: true)).GetAwaiter().GetResult().Select(h => TestData.Decode(h.Payload));
    }

    private static void Emit(string line)
    {
        Console.Out.WriteLine(line);
        Console.Out.Flush();
    }
}
