using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using Xunit.Abstractions;

namespace ImageSearch.VectorStore.Tests;

public sealed class HnswIndexTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void Recall_at_10_against_exact_search_is_at_least_95_percent()
    {
        const int dim = 128;
        const int k = 10;
        // Queries from the same distribution as the data (same cluster centres), as real queries are.
        var all = TestData.Clustered(5200, dim, clusters: 50, spread: 0.6, seed: 1);
        var data = all[..5000];
        var queries = all[5000..];
        using var graph = HnswIndex.Create(dim, capacity: data.Length, m: 16, efConstruction: 200, seed: 42);
        var exact = new ExactIndex(dim);
        for (var i = 0; i < data.Length; i++)
        {
            graph.Add(i, data[i]);
            exact.Set(i, data[i]);
        }

        var hits = 0;
        var labels = new long[k];
        var distances = new float[k];
        var truth = new long[k];
        var scores = new float[k];
        foreach (var query in queries)
        {
            Assert.Equal(k, graph.Search(query, k, ef: 64, labels, distances));
            exact.Search(query, k, truth, scores);
            hits += labels.Intersect(truth).Count();
        }

        var recall = hits / (double)(queries.Length * k);
        output.WriteLine($"recall@10 = {recall:F4} (ef=64, kernel {HnswIndex.DistanceKernel})");
        Assert.True(recall >= 0.95, $"recall@10 was {recall:F4}");
    }

    [Fact]
    public void Replace_delete_and_undelete_follow_their_labels()
    {
        const int dim = 8;
        using var graph = HnswIndex.Create(dim, capacity: 100);
        for (var i = 0; i < 50; i++)
        {
            graph.Add(i, TestData.Normalized(TestData.Vector(i, dim)));
        }

        var target = TestData.Normalized(TestData.Vector(7, dim, version: 1));
        Assert.Equal(HnswStatus.AlreadyExists, Assert.Throws<HnswException>(() => graph.Add(3, target)).Status);
        graph.Add(3, target, replace: true);
        Assert.Equal(3, Nearest(graph, target).Label);
        Assert.Equal(0f, Nearest(graph, target).Distance, 1e-5f);
        Assert.Equal(50, graph.Count);

        graph.MarkDeleted(3);
        Assert.Equal(HnswLabelState.Deleted, graph.GetState(3));
        Assert.NotEqual(3, Nearest(graph, target).Label);
        Assert.Equal(HnswStatus.AlreadyDeleted, Assert.Throws<HnswException>(() => graph.MarkDeleted(3)).Status);
        graph.UnmarkDeleted(3);
        Assert.Equal(3, Nearest(graph, target).Label);
        Assert.Equal(HnswStatus.NotDeleted, Assert.Throws<HnswException>(() => graph.UnmarkDeleted(3)).Status);

        // Replacing a deleted label revives it (hnswlib's updatePoint path).
        graph.MarkDeleted(3);
        graph.Add(3, target, replace: true);
        Assert.Equal(HnswLabelState.Live, graph.GetState(3));
        Assert.Equal(0, graph.DeletedCount);

        Assert.Equal(HnswLabelState.Absent, graph.GetState(999));
        Assert.Equal(HnswStatus.NotFound, Assert.Throws<HnswException>(() => graph.MarkDeleted(999)).Status);
        Assert.Throws<ArgumentException>(() => graph.Add(60, new float[dim + 1]));
    }

    [Fact]
    public void A_full_index_refuses_new_labels_until_resized()
    {
        const int dim = 4;
        using var graph = HnswIndex.Create(dim, capacity: 2);
        graph.Add(0, TestData.Normalized(TestData.Vector(0, dim)));
        graph.Add(1, TestData.Normalized(TestData.Vector(1, dim)));
        var error = Assert.Throws<HnswException>(() => graph.Add(2, TestData.Normalized(TestData.Vector(2, dim))));
        Assert.Equal(HnswStatus.Capacity, error.Status);
        Assert.Contains("full", error.Message, StringComparison.Ordinal);

        graph.Resize(4);
        graph.Add(2, TestData.Normalized(TestData.Vector(2, dim)));
        Assert.Equal(4, graph.Capacity);
        Assert.Equal(3, graph.Count);
        Assert.Equal(HnswStatus.InvalidArgument, Assert.Throws<HnswException>(() => graph.Resize(2)).Status);
    }

    [Fact]
    public void Save_and_load_round_trip_gives_identical_results()
    {
        const int dim = 32;
        var all = TestData.Clustered(820, dim, clusters: 10, spread: 0.5, seed: 3);
        var data = all[..800];
        var path = _temp.Sub("graph.bin");
        using var graph = HnswIndex.Create(dim, capacity: 1000);
        for (var i = 0; i < data.Length; i++)
        {
            graph.Add(i, data[i]);
        }

        graph.MarkDeleted(5);
        graph.Save(path);
        using var loaded = HnswIndex.Load(path, dim, capacity: 2000);

        Assert.Equal(800, loaded.Count);
        Assert.Equal(1, loaded.DeletedCount);
        Assert.Equal(2000, loaded.Capacity);
        Assert.Equal(HnswLabelState.Deleted, loaded.GetState(5));
        foreach (var query in all[800..])
        {
            Assert.Equal(SearchAll(graph, query), SearchAll(loaded, query));
        }

        Assert.Equal(HnswStatus.Corrupt, Assert.Throws<HnswException>(() => HnswIndex.Load(path, dim * 2, 0)).Status);
    }

    [Fact]
    public void Damaged_files_are_reported_not_crashed_on()
    {
        const int dim = 8;
        const int m = 16;
        var path = _temp.Sub("graph.bin");
        using (var graph = HnswIndex.Create(dim, capacity: 100, m: m))
        {
            for (var i = 0; i < 100; i++)
            {
                graph.Add(i, TestData.Normalized(TestData.Vector(i, dim)));
            }

            graph.Save(path);
        }

        var original = File.ReadAllBytes(path);

        // Same size, but element 0's first level-0 link points far outside the graph. The header is
        // 96 bytes; each level-0 record starts with a 4-byte count word, then the links.
        var badLink = (byte[])original.Clone();
        BitConverter.GetBytes(0xFFFF_FFF0u).CopyTo(badLink, 96 + 4);
        File.WriteAllBytes(path, badLink);
        Assert.Equal(HnswStatus.Corrupt, Assert.Throws<HnswException>(() => HnswIndex.Load(path, dim, 0)).Status);

        File.WriteAllBytes(path, original.AsSpan(0, original.Length - 7).ToArray());
        Assert.Equal(HnswStatus.Corrupt, Assert.Throws<HnswException>(() => HnswIndex.Load(path, dim, 0)).Status);

        // A header claiming billions of elements must not make hnswlib try to allocate them.
        var hugeCount = (byte[])original.Clone();
        BitConverter.GetBytes(3_000_000_000UL).CopyTo(hugeCount, 16);
        File.WriteAllBytes(path, hugeCount);
        Assert.Equal(HnswStatus.Corrupt, Assert.Throws<HnswException>(() => HnswIndex.Load(path, dim, 0)).Status);

        File.WriteAllBytes(path, [1, 2, 3]);
        Assert.Equal(HnswStatus.Corrupt, Assert.Throws<HnswException>(() => HnswIndex.Load(path, dim, 0)).Status);
        Assert.Equal(HnswStatus.Io, Assert.Throws<HnswException>(() => HnswIndex.Load(_temp.Sub("missing.bin"), dim, 0)).Status);
    }

    [Fact]
    public void Concurrent_searches_with_different_ef_match_sequential_ones()
    {
        const int dim = 24;
        var all = TestData.Clustered(2064, dim, clusters: 20, spread: 0.5, seed: 5);
        var data = all[..2000];
        using var graph = HnswIndex.Create(dim, capacity: data.Length);
        for (var i = 0; i < data.Length; i++)
        {
            graph.Add(i, data[i]);
        }

        var queries = all[2000..];
        var expected = queries.Select((q, i) => SearchAll(graph, q, ef: 10 + (i % 4 * 40))).ToArray();
        var actual = new long[queries.Length][];
        Parallel.For(0, queries.Length * 8, new ParallelOptions { MaxDegreeOfParallelism = 4 }, j =>
        {
            var i = j % queries.Length;
            actual[i] = SearchAll(graph, queries[i], ef: 10 + (i % 4 * 40));
        });

        Assert.Equal(expected, actual);
    }

    [Fact]
    public void Batch_insert_on_several_threads_builds_a_searchable_graph()
    {
        const int dim = 16;
        const int k = 10;
        var all = TestData.Clustered(3100, dim, clusters: 20, spread: 0.6, seed: 8);
        var labels = Enumerable.Range(0, 3000).Select(i => (long)i).ToArray();
        var packed = all[..3000].SelectMany(v => v).ToArray();
        using var graph = HnswIndex.Create(dim, capacity: 3000);
        var exact = new ExactIndex(dim);
        for (var i = 0; i < 3000; i++)
        {
            exact.Set(i, all[i]);
        }

        graph.AddBatch(labels, packed, threads: 2);

        Assert.Equal(3000, graph.Count);
        var hits = 0;
        var (found, distances, truth, scores) = (new long[k], new float[k], new long[k], new float[k]);
        foreach (var query in all[3000..])
        {
            graph.Search(query, k, 64, found, distances);
            exact.Search(query, k, truth, scores);
            hits += found.Intersect(truth).Count();
        }

        Assert.True(hits >= 0.95 * 100 * k, $"recall@10 was {hits / (100.0 * k):F3}");
        var held = new float[dim];
        Assert.True(graph.TryGetVector(1234, held));
        Assert.Equal(all[1234], held);
        Assert.False(graph.TryGetVector(5000, held));
    }

    [Fact]
    public void Batch_insert_checks_every_label_before_adding_any()
    {
        const int dim = 4;
        using var graph = HnswIndex.Create(dim, capacity: 4);
        var vectors = Enumerable.Range(0, 3).SelectMany(i => TestData.Normalized(TestData.Vector(i, dim))).ToArray();
        graph.Add(7, vectors[..dim]);

        Assert.Equal(HnswStatus.AlreadyExists, Assert.Throws<HnswException>(() => graph.AddBatch([1, 7, 2], vectors)).Status);
        Assert.Equal(HnswStatus.AlreadyExists, Assert.Throws<HnswException>(() => graph.AddBatch([1, 2, 1], vectors)).Status);
        Assert.Equal(1, graph.Count);
        graph.Add(8, vectors[..dim]);
        Assert.Equal(HnswStatus.Capacity, Assert.Throws<HnswException>(() => graph.AddBatch([1, 2, 3], vectors)).Status);
        Assert.Throws<ArgumentException>(() => graph.AddBatch([1, 2], vectors));
    }

    [Fact]
    public void The_distance_kernel_is_the_best_this_cpu_runs()
    {
        // The shim is compiled for baseline x86-64 and dispatches at run time; .NET sees the same CPUID
        // and OS support. IMAGESEARCH_HNSW_KERNEL may cap the default, never the best.
        var expected = RuntimeInformation.ProcessArchitecture != Architecture.X64 ? "scalar"
            : Avx512F.IsSupported ? "avx512"
            : Avx2.IsSupported && Fma.IsSupported ? "avx2"
            : "sse";
        Assert.Equal(expected, HnswIndex.BestDistanceKernel);
        Assert.Equal(expected, HnswIndex.SupportedDistanceKernels[^1]);
        Assert.Equal("scalar", HnswIndex.SupportedDistanceKernels[0]);
        if (Environment.GetEnvironmentVariable("IMAGESEARCH_HNSW_KERNEL") is null)
        {
            Assert.Equal(expected, HnswIndex.DistanceKernel);
            using var graph = HnswIndex.Create(8, capacity: 4);
            Assert.Equal(expected, graph.Kernel);
        }
    }

    [Fact]
    public void Every_distance_kernel_matches_the_scalar_reference()
    {
        // Dimensions around every kernel's block sizes (4, 8, 16, 32, 64) and the models' (512, 768, 1792).
        int[] dims = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 512, 768, 1792];
        var rng = new Random(5);
        foreach (var dim in dims)
        {
            for (var trial = 0; trial < 5; trial++)
            {
                var a = TestData.Normalized(Enumerable.Range(0, dim).Select(_ => (float)((rng.NextDouble() * 2) - 1)).ToArray());
                var b = trial == 0 ? a : TestData.Normalized(Enumerable.Range(0, dim).Select(_ => (float)((rng.NextDouble() * 2) - 1)).ToArray());
                var exact = 1 - a.Zip(b, (x, y) => (double)x * y).Sum();
                var scalar = HnswIndex.Distance("scalar", a, b);
                Assert.Equal(exact, scalar, 1e-5);
                foreach (var kernel in HnswIndex.SupportedDistanceKernels)
                {
                    var d = HnswIndex.Distance(kernel, a, b);
                    Assert.True(Math.Abs(d - scalar) <= 1e-5, $"{kernel} at {dim} dimensions: {d} vs scalar {scalar}");
                }
            }
        }
    }

    [Fact]
    public void Every_int8_kernel_gives_the_scalar_int8_distance_and_stays_close_to_float()
    {
        int[] dims = [1, 3, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 512, 768, 1792];
        var rng = new Random(9);
        foreach (var dim in dims)
        {
            for (var trial = 0; trial < 5; trial++)
            {
                var a = TestData.RandomUnit(rng, dim);
                var b = trial == 0 ? a : TestData.RandomUnit(rng, dim);
                var scalar = HnswIndex.Distance("scalar", a, b, HnswVectorFormat.Int8);
                foreach (var kernel in HnswIndex.SupportedDistanceKernels)
                {
                    // Integer dot products: every kernel gives the same bits.
                    Assert.Equal(scalar, HnswIndex.Distance(kernel, a, b, HnswVectorFormat.Int8));
                }

                // Rounding to 1/127 of the largest component: an error of a few 1e-3 on unit vectors.
                var exact = 1 - TestData.Dot(a, b);
                Assert.True(Math.Abs(scalar - exact) < 0.02, $"{dim} dimensions: int8 {scalar} vs float {exact}");
            }
        }
    }

    [Fact]
    public void An_int8_graph_searches_saves_and_loads_only_as_int8()
    {
        const int dim = 64;
        var all = TestData.Clustered(2100, dim, clusters: 30, spread: 0.6, seed: 4);
        var data = all[..2000];
        var exact = new ExactIndex(dim);
        using var graph = HnswIndex.Create(dim, capacity: data.Length, format: HnswVectorFormat.Int8);
        Assert.Equal(HnswVectorFormat.Int8, graph.Format);
        for (var i = 0; i < data.Length; i++)
        {
            graph.Add(i, data[i]);
            exact.Set(i, data[i]);
        }

        // Approximate distances alone (no rescoring) still find most true neighbours.
        var recall = Recall(graph, exact, all[2000..], 10);
        output.WriteLine($"int8 graph without rescoring: recall@10 = {recall:F4}");
        Assert.True(recall >= 0.85, $"recall@10 was {recall:F4}");

        // Holds compares codes: the vector added, not a slightly different one; decoding is approximate.
        Assert.True(graph.Holds(5, data[5]));
        Assert.False(graph.Holds(5, data[6]));
        Assert.False(graph.Holds(99_999, data[5]));
        var decoded = new float[dim];
        Assert.True(graph.TryGetVector(5, decoded));
        Assert.True(decoded.Zip(data[5], (x, y) => Math.Abs(x - y)).Max() < 0.01f);

        var path = _temp.Sub("int8.bin");
        graph.Save(path);
        using (var loaded = HnswIndex.Load(path, dim, data.Length, format: HnswVectorFormat.Int8))
        {
            Assert.Equal(SearchAll(graph, data[3]), SearchAll(loaded, data[3]));
        }

        Assert.Equal(HnswStatus.Corrupt, Assert.Throws<HnswException>(() => HnswIndex.Load(path, dim, data.Length)).Status);
    }

    [Fact]
    public void A_kernel_this_machine_cannot_run_is_refused()
    {
        Assert.Throws<ArgumentException>(() => HnswIndex.Create(8, capacity: 4, kernel: "avx1024"));
        if (HnswIndex.BestDistanceKernel != "avx512")
        {
            Assert.Throws<ArgumentException>(() => HnswIndex.Create(8, capacity: 4, kernel: "avx512"));
        }
    }

    [Fact]
    public void Graphs_built_with_every_kernel_reach_the_same_recall_and_search_each_other_snapshots()
    {
        const int dim = 96;
        const int k = 10;
        var all = TestData.Clustered(3100, dim, clusters: 30, spread: 0.6, seed: 3);
        var data = all[..3000];
        var queries = all[3000..];
        var exact = new ExactIndex(dim);
        for (var i = 0; i < data.Length; i++)
        {
            exact.Set(i, data[i]);
        }

        foreach (var kernel in HnswIndex.SupportedDistanceKernels)
        {
            using var graph = HnswIndex.Create(dim, capacity: data.Length, m: 16, efConstruction: 100, seed: 42, kernel: kernel);
            Assert.Equal(kernel, graph.Kernel);
            for (var i = 0; i < data.Length; i++)
            {
                graph.Add(i, data[i]);
            }

            var recall = Recall(graph, exact, queries, k);
            output.WriteLine($"{kernel}: recall@10 = {recall:F4}");
            Assert.True(recall >= 0.95, $"{kernel}: recall@10 was {recall:F4}");

            // A snapshot does not record the kernel: it loads under the default one and answers alike.
            var path = _temp.Sub($"{kernel}.bin");
            graph.Save(path);
            using var loaded = HnswIndex.Load(path, dim, data.Length);
            Assert.Equal(HnswIndex.DistanceKernel, loaded.Kernel);
            Assert.True(Recall(loaded, exact, queries, k) >= 0.95);
        }
    }

    private static double Recall(HnswIndex graph, ExactIndex exact, float[][] queries, int k)
    {
        var hits = 0;
        var labels = new long[k];
        var distances = new float[k];
        var truth = new long[k];
        var scores = new float[k];
        foreach (var query in queries)
        {
            graph.Search(query, k, ef: 64, labels, distances);
            exact.Search(query, k, truth, scores);
            hits += labels.Intersect(truth).Count();
        }

        return hits / (double)(queries.Length * k);
    }

    private static (long Label, float Distance) Nearest(HnswIndex graph, float[] query)
    {
        var labels = new long[1];
        var distances = new float[1];
        Assert.Equal(1, graph.Search(query, 1, 50, labels, distances));
        return (labels[0], distances[0]);
    }

    private static long[] SearchAll(HnswIndex graph, float[] query, int ef = 50)
    {
        var labels = new long[10];
        var distances = new float[10];
        var found = graph.Search(query, 10, ef, labels, distances);
        return labels[..found];
    }
}
