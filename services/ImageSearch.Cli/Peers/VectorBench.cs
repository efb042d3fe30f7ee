using System.Diagnostics;
using System.Globalization;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Text.Json;
using ImageSearch.VectorStore;

namespace ImageSearch.Cli.Peers;

/// <summary>Recall@10 and throughput at one beam width.</summary>
internal sealed record AnnRow(int Ef, double Recall, double Qps);

/// <summary>One library's figures on one vector set.</summary>
internal sealed record AnnResult(string Name, string Version, double BuildSeconds, double BytesPerVector, IReadOnlyList<AnnRow> Rows, string? Error = null)
{
    /// <summary>The fastest row that reaches <paramref name="recall"/>, if any.</summary>
    public AnnRow? At(double recall) => Rows.Where(r => r.Recall >= recall).MaxBy(r => r.Qps);

    public static AnnResult Failed(string name, string error) => new(name, "", double.NaN, double.NaN, [], error);
}

/// <summary>A base set, its queries and their exact top 10.</summary>
internal sealed class VectorSet
{
    public const int K = 10;

    public VectorSet(string label, float[] data, int count, float[] queries, int queryCount, int dimensions)
    {
        Label = label;
        Data = data;
        Count = count;
        Queries = queries;
        QueryCount = queryCount;
        Dimensions = dimensions;
        Truth = ExactTopK(data, count, queries, queryCount, dimensions);
    }

    public string Label { get; }

    public float[] Data { get; }

    public int Count { get; }

    public float[] Queries { get; }

    public int QueryCount { get; }

    public int Dimensions { get; }

    /// <summary>Row numbers of the exact 10 nearest base rows of each query, best first.</summary>
    public int[] Truth { get; }

    public double Recall(ReadOnlySpan<long> found, int query)
    {
        var truth = Truth.AsSpan(query * K, K);
        var hits = 0;
        foreach (var f in found)
        {
            if (truth.Contains((int)f))
            {
                hits++;
            }
        }

        return hits / (double)K;
    }

    /// <summary>
    /// Brute force by blocks (64 queries against 2,048 rows at a time, so each block of rows is read
    /// from memory once per 64 queries, not once per query), on every core. The reference answer
    /// every library is scored against; not a measured contender.
    /// </summary>
    private static int[] ExactTopK(float[] data, int count, float[] queries, int queryCount, int d)
    {
        const int QueryBlock = 64;
        const int RowBlock = 2048;
        var truth = new int[queryCount * K];
        var blocks = (queryCount + QueryBlock - 1) / QueryBlock;
        Parallel.For(0, blocks, b =>
        {
            var q0 = b * QueryBlock;
            var nq = Math.Min(QueryBlock, queryCount - q0);
            var best = Enumerable.Range(0, nq).Select(_ => new PriorityQueue<int, float>(K + 1)).ToArray();
            for (var r0 = 0; r0 < count; r0 += RowBlock)
            {
                var nr = Math.Min(RowBlock, count - r0);
                for (var q = 0; q < nq; q++)
                {
                    var query = queries.AsSpan((q0 + q) * d, d);
                    var heap = best[q];
                    for (var r = r0; r < r0 + nr; r++)
                    {
                        var s = TensorPrimitives.Dot(query, data.AsSpan((int)((long)r * d), d));
                        if (heap.Count < K)
                        {
                            heap.Enqueue(r, s);
                        }
                        else if (heap.TryPeek(out _, out var worst) && s > worst)
                        {
                            heap.DequeueEnqueue(r, s);
                        }
                    }
                }
            }

            for (var q = 0; q < nq; q++)
            {
                var heap = best[q];
                for (var i = heap.Count - 1; i >= 0; i--)
                {
                    truth[((q0 + q) * K) + i] = heap.Dequeue();
                }
            }
        });
        return truth;
    }

    /// <summary>Writes the base, queries and truth for the Python peers.</summary>
    public (string Base, string Queries, string Truth) WriteFiles(string directory)
    {
        Directory.CreateDirectory(directory);
        var paths = (Path.Combine(directory, "base.f32"), Path.Combine(directory, "queries.f32"), Path.Combine(directory, "truth.i32"));
        WriteRaw(paths.Item1, Data, (long)Count * Dimensions);
        WriteRaw(paths.Item2, Queries, (long)QueryCount * Dimensions);
        using (var f = File.Create(paths.Item3))
        {
            f.Write(MemoryMarshal.AsBytes(Truth.AsSpan()));
        }

        return paths;
    }

    // Chunked: a 1M x 512 set is more bytes than one span can hold.
    private static void WriteRaw(string path, float[] values, long length)
    {
        using var f = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        const int Chunk = 1 << 24;
        for (long start = 0; start < length; start += Chunk)
        {
            var n = (int)Math.Min(Chunk, length - start);
            f.Write(MemoryMarshal.AsBytes(values.AsSpan((int)start, n)));
        }
    }
}

/// <summary>
/// The vector-search comparison: ImageSearch's HNSW index (<see cref="HnswIndex"/>, the graph the
/// embedded store builds and searches, through its native shim) against FAISS and hnswlib from
/// Debian on the same vectors, M, efConstruction and thread count.
/// </summary>
internal static class VectorBench
{
    /// <summary>
    /// Builds the graph with <see cref="HnswIndex.AddBatch"/> on <paramref name="threads"/> threads
    /// (what the store does when it rebuilds) and searches every query at each ef, the queries
    /// spread over <paramref name="threads"/> threads, repeated for at least <paramref name="minSeconds"/>.
    /// Memory: growth of the native heap across the build (<see cref="NativeHeap.InUse"/>), where the
    /// shim allocates the whole graph, as FAISS and hnswlib allocate theirs. The managed heap is left
    /// out: the index keeps nothing there, and what the collector frees meanwhile of the bench's own
    /// arrays made the figure swing (one run read 436 bytes per vector for a graph of ~2,300).
    /// </summary>
    public static AnnResult MeasureImageSearch(VectorSet set, int m, int efConstruction, int[] efs, int threads, double minSeconds, string? kernel = null)
    {
        var labels = new long[set.Count];
        for (var i = 0; i < labels.Length; i++)
        {
            labels[i] = i;
        }

        var before = NativeHeap.InUse();
        var t = Stopwatch.GetTimestamp();
        using var graph = HnswIndex.Create(set.Dimensions, set.Count, m, efConstruction, kernel: kernel);
        graph.AddBatch(labels, set.Data.AsSpan(0, (int)((long)set.Count * set.Dimensions)), threads);
        var build = Stopwatch.GetElapsedTime(t).TotalSeconds;
        var bytes = NativeHeap.InUse() - before;

        var rows = new List<AnnRow>();
        foreach (var ef in efs)
        {
            var found = new long[set.QueryCount * VectorSet.K];
            SearchAll(set, threads, (q, l, d) => graph.Search(set.Queries.AsSpan(q * set.Dimensions, set.Dimensions), VectorSet.K, ef, l, d), found);
            var recall = Enumerable.Range(0, set.QueryCount).Average(q => set.Recall(found.AsSpan(q * VectorSet.K, VectorSet.K), q));
            var qps = Throughput(set, threads, minSeconds, (q, l, d) => graph.Search(set.Queries.AsSpan(q * set.Dimensions, set.Dimensions), VectorSet.K, ef, l, d));
            rows.Add(new AnnRow(ef, recall, qps));
        }

        return new AnnResult(kernel is null ? "ImageSearch HNSW" : $"ImageSearch HNSW, {kernel} kernel", $"hnswlib 0.6.2 graph in the shim, {graph.Kernel} kernel", build, bytes / (double)set.Count, rows);
    }

    /// <summary>Answers every query once into <paramref name="found"/> (labels, K per query).</summary>
    public static void SearchAll(VectorSet set, int threads, Func<int, Span<long>, Span<float>, int> search, long[] found)
    {
        var next = -1;
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, _ =>
        {
            var d = new float[VectorSet.K];
            int q;
            while ((q = Interlocked.Increment(ref next)) < set.QueryCount)
            {
                var span = found.AsSpan(q * VectorSet.K, VectorSet.K);
                span.Fill(-1);
                search(q, span, d);
            }
        });
    }

    /// <summary>
    /// Queries per second of the fastest whole pass over the query set on <paramref name="threads"/>
    /// threads (at least 3 passes and <paramref name="minSeconds"/> in all; the peers are timed the
    /// same way): other work on a shared machine only ever slows a pass down.
    /// </summary>
    public static double Throughput(VectorSet set, int threads, double minSeconds, Func<int, Span<long>, Span<float>, int> search)
    {
        var best = double.MaxValue;
        var passes = 0;
        var start = Stopwatch.GetTimestamp();
        do
        {
            var next = -1;
            var t = Stopwatch.GetTimestamp();
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, _ =>
            {
                var l = new long[VectorSet.K];
                var d = new float[VectorSet.K];
                while (Interlocked.Increment(ref next) is var q && q < set.QueryCount)
                {
                    search(q, l, d);
                }
            });
            best = Math.Min(best, Stopwatch.GetElapsedTime(t).TotalSeconds);
            passes++;
        }
        while (passes < 3 || Stopwatch.GetElapsedTime(start).TotalSeconds < minSeconds);
        return set.QueryCount / best;
    }

    /// <summary>Runs bench/peers/ann.py for one library on the files written by <see cref="VectorSet.WriteFiles"/>.</summary>
    public static async Task<AnnResult> RunPeerAsync(string lib, VectorSet set, (string Base, string Queries, string Truth) files, int m, int efConstruction,
        int[] efs, int threads, double minSeconds, double flatSeconds, CancellationToken ct)
    {
        var args = new List<string>
        {
            Path.Combine(CliHost.RepoRoot, "bench", "peers", "ann.py"), "--lib", lib, "--base", files.Base, "--count", Str(set.Count), "--dim", Str(set.Dimensions),
            "--queries", files.Queries, "--nq", Str(set.QueryCount), "--truth", files.Truth, "--m", Str(m), "--ef-construction", Str(efConstruction),
            "--efs", string.Join(',', efs), "--threads", Str(threads), "--min-seconds", Str(minSeconds), "--flat-seconds", Str(flatSeconds),
        };

        // libgomp threads spin while waiting by default; on a shared 2-core machine that steals the
        // other thread's core (measured: FAISS HNSW search QPS 937 spinning vs 1197 passive).
        var (code, output, error) = await PeerProcess.RunAsync(PeerProcess.Python, args, ct, ("OMP_WAIT_POLICY", "PASSIVE")).ConfigureAwait(false);
        var name = lib switch { "faiss-hnsw" => "FAISS IndexHNSWFlat", "faiss-flat" => "FAISS IndexFlatIP (exact)", _ => "hnswlib (Python)" };
        if (code != 0)
        {
            return AnnResult.Failed(name, $"ann.py {lib} exited {code}: {error.Trim()}");
        }

        var json = JsonDocument.Parse(output).RootElement;
        var rows = json.GetProperty("rows").EnumerateArray()
            .Select(r => new AnnRow(r.GetProperty("ef").GetInt32(), r.GetProperty("recall").GetDouble(), r.GetProperty("qps").GetDouble())).ToList();
        return new AnnResult(name, json.GetProperty("version").GetString() ?? "", json.GetProperty("build_s").GetDouble(), json.GetProperty("bytes_per_vector").GetDouble(), rows);
    }

    /// <summary>
    /// The 1M set: the real rows, then copies of them with isotropic Gaussian noise (in the whitened
    /// space the calibration produces, where isotropic noise is the natural perturbation), scaled so
    /// that a copy's cosine to its source equals <paramref name="cosine"/>, then re-normalised.
    /// </summary>
    public static float[] Perturbed(float[] real, int realCount, int total, int d, double cosine, int seed)
    {
        var data = new float[(long)total * d];
        Array.Copy(real, data, (long)realCount * d);
        var sigma = Math.Sqrt((1 / (cosine * cosine)) - 1);
        var rows = total - realCount;
        var chunks = Environment.ProcessorCount * 8;
        Parallel.For(0, chunks, c =>
        {
            var rng = new Random(seed + c);
            var scale = (float)(sigma / Math.Sqrt(d));
            for (var i = c; i < rows; i += chunks)
            {
                var row = realCount + i;
                var source = real.AsSpan((int)((long)(i % realCount) * d), d);
                var target = data.AsSpan((int)((long)row * d), d);
                for (var j = 0; j < d; j++)
                {
                    target[j] = source[j] + (scale * Gaussian(rng));
                }

                TensorPrimitives.Divide(target, TensorPrimitives.Norm(target), target);
            }
        });
        return data;
    }

    /// <summary>Median cosine between a row and its nearest other row, over <paramref name="sample"/> rows.</summary>
    public static double NearestNeighbourCosine(VectorSet set, int sample)
    {
        var cos = new double[Math.Min(sample, set.QueryCount)];
        for (var q = 0; q < cos.Length; q++)
        {
            cos[q] = TensorPrimitives.Dot(set.Queries.AsSpan(q * set.Dimensions, set.Dimensions), set.Data.AsSpan(set.Truth[q * VectorSet.K] * set.Dimensions, set.Dimensions));
        }

        Array.Sort(cos);
        return cos[cos.Length / 2];
    }

    private static float Gaussian(Random rng)
    {
        // Box-Muller; one of the pair is enough here.
        var u1 = 1.0 - rng.NextDouble();
        var u2 = rng.NextDouble();
        return (float)(Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
    }

    private static string Str(double v) => v.ToString(CultureInfo.InvariantCulture);
}
