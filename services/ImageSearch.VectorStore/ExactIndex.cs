using System.Numerics.Tensors;

namespace ImageSearch.VectorStore;

/// <summary>
/// Vectors held in memory by label, with brute-force top-k by dot product (= cosine for unit
/// vectors). The dot products use <see cref="TensorPrimitives.Dot(ReadOnlySpan{float}, ReadOnlySpan{float})"/>,
/// which picks the widest SIMD the CPU has at run time (AVX-512, AVX2, SSE, NEON).
/// </summary>
/// <remarks>
/// Storage is an arena of fixed-size chunks (1,024 rows each), so no single array approaches the
/// 2 GB array limit and growth never copies existing vectors. Memory is proportional to the largest
/// label ever set, not to the live count: labels should be dense integers from 0 (removed labels
/// leave a hole until reused).
/// Thread-safety: <see cref="Search"/>, <see cref="Get"/>, <see cref="Contains"/> and
/// <see cref="Count"/> may run concurrently with each other; <see cref="Set"/> and
/// <see cref="Remove"/> need exclusive access.
/// A query scans every live row on the calling thread: cost is memory-bound, about
/// Count * Dimensions * 4 bytes read per query.
/// </remarks>
public sealed class ExactIndex
{
    private const int ChunkShift = 10;
    private const int ChunkRows = 1 << ChunkShift;

    /// <summary>Largest label accepted (keeps the chunk table within an int-indexed array).</summary>
    public const long MaxLabel = ((long)int.MaxValue << ChunkShift) - 1;

    private Chunk?[] _chunks = [];

    public ExactIndex(int dimensions)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(dimensions, 1);
        Dimensions = dimensions;
    }

    public int Dimensions { get; }

    /// <summary>Live vectors.</summary>
    public int Count { get; private set; }

    /// <summary>Stores (or overwrites) the vector of <paramref name="label"/>.</summary>
    public void Set(long label, ReadOnlySpan<float> vector)
    {
        CheckLabel(label);
        CheckDimensions(vector);
        var index = (int)(label >> ChunkShift);
        if (index >= _chunks.Length)
        {
            Array.Resize(ref _chunks, Math.Max(index + 1, _chunks.Length * 2));
        }

        var chunk = _chunks[index] ??= new Chunk(Dimensions);
        var row = (int)(label & (ChunkRows - 1));
        vector.CopyTo(chunk.Vectors.AsSpan(row * Dimensions, Dimensions));
        if (!chunk.Live[row])
        {
            chunk.Live[row] = true;
            Count++;
        }
    }

    /// <summary>Forgets <paramref name="label"/>; returns whether it was present.</summary>
    public bool Remove(long label)
    {
        if (!TryLocate(label, out var chunk, out var row))
        {
            return false;
        }

        chunk.Live[row] = false;
        Count--;
        return true;
    }

    public bool Contains(long label) => TryLocate(label, out _, out _);

    /// <summary>
    /// The stored vector, or an empty span when absent. A view into the arena, valid until the label
    /// is next set or removed: copy it when another thread may write.
    /// </summary>
    public ReadOnlySpan<float> Get(long label) =>
        TryLocate(label, out var chunk, out var row) ? chunk.Vectors.AsSpan(row * Dimensions, Dimensions) : [];

    /// <summary>
    /// The <paramref name="k"/> live vectors with the highest dot product with <paramref name="query"/>,
    /// best first (ties: lower label first). Writes into <paramref name="labels"/> and
    /// <paramref name="scores"/> (each at least k long) and returns how many were found.
    /// </summary>
    public int Search(ReadOnlySpan<float> query, int k, Span<long> labels, Span<float> scores) =>
        Scan(query, k, labels, scores, static (a, b) => TensorPrimitives.Dot(a, b));

    /// <summary>
    /// Same contract as <see cref="Search"/> with a plain scalar loop accumulated in double: the
    /// reference the SIMD path is tested against. Not for production use (several times slower).
    /// </summary>
    internal int SearchReference(ReadOnlySpan<float> query, int k, Span<long> labels, Span<float> scores) =>
        Scan(query, k, labels, scores, static (a, b) =>
        {
            var sum = 0d;
            for (var i = 0; i < a.Length; i++)
            {
                sum += (double)a[i] * b[i];
            }

            return (float)sum;
        });

    private delegate float DotProduct(ReadOnlySpan<float> a, ReadOnlySpan<float> b);

    private int Scan(ReadOnlySpan<float> query, int k, Span<long> labels, Span<float> scores, DotProduct dot)
    {
        CheckDimensions(query);
        ArgumentOutOfRangeException.ThrowIfLessThan(k, 1);
        if (labels.Length < k || scores.Length < k)
        {
            throw new ArgumentException("Output spans must hold k results.", nameof(labels));
        }

        var top = new TopK(labels[..k], scores[..k]);
        var dim = Dimensions;
        for (var c = 0; c < _chunks.Length; c++)
        {
            var chunk = _chunks[c];
            if (chunk is null)
            {
                continue;
            }

            var baseLabel = (long)c << ChunkShift;
            var vectors = chunk.Vectors.AsSpan();
            var live = chunk.Live;
            for (var row = 0; row < ChunkRows; row++)
            {
                if (live[row])
                {
                    top.Offer(dot(query, vectors.Slice(row * dim, dim)), baseLabel + row);
                }
            }
        }

        return top.SortDescending();
    }

    private bool TryLocate(long label, out Chunk chunk, out int row)
    {
        chunk = null!;
        row = 0;
        if (label < 0 || label > MaxLabel)
        {
            return false;
        }

        var index = (int)(label >> ChunkShift);
        if (index >= _chunks.Length || _chunks[index] is not { } found)
        {
            return false;
        }

        row = (int)(label & (ChunkRows - 1));
        chunk = found;
        return found.Live[row];
    }

    private static void CheckLabel(long label)
    {
        if (label < 0 || label > MaxLabel)
        {
            throw new ArgumentOutOfRangeException(nameof(label), label, $"Labels must be in 0..{MaxLabel}.");
        }
    }

    private void CheckDimensions(ReadOnlySpan<float> vector)
    {
        if (vector.Length != Dimensions)
        {
            throw new ArgumentException($"Expected a vector of {Dimensions} dimensions, got {vector.Length}.", nameof(vector));
        }
    }

    private sealed class Chunk(int dimensions)
    {
        public float[] Vectors { get; } = new float[ChunkRows * dimensions];

        public bool[] Live { get; } = new bool[ChunkRows];
    }

    /// <summary>
    /// Bounded min-heap over caller-provided spans: the root is the worst kept result, so each
    /// candidate costs one comparison unless it beats it. Ties keep the lower label (deterministic).
    /// </summary>
    private ref struct TopK(Span<long> labels, Span<float> scores)
    {
        private readonly Span<long> _labels = labels;
        private readonly Span<float> _scores = scores;
        private int _count;

        public void Offer(float score, long label)
        {
            if (_count < _labels.Length)
            {
                var i = _count++;
                _labels[i] = label;
                _scores[i] = score;
                SiftUp(i);
            }
            else if (Better(score, label, _scores[0], _labels[0]))
            {
                _labels[0] = label;
                _scores[0] = score;
                SiftDown(0, _count);
            }
        }

        /// <summary>Turns the heap into a best-first list (heapsort in place); returns its length.</summary>
        public int SortDescending()
        {
            for (var end = _count - 1; end > 0; end--)
            {
                Swap(0, end);
                SiftDown(0, end);
            }

            return _count;
        }

        private static bool Better(float scoreA, long labelA, float scoreB, long labelB) =>
            scoreA > scoreB || (scoreA == scoreB && labelA < labelB);

        private void SiftUp(int i)
        {
            while (i > 0)
            {
                var parent = (i - 1) / 2;
                if (!Better(_scores[parent], _labels[parent], _scores[i], _labels[i]))
                {
                    return;
                }

                Swap(i, parent);
                i = parent;
            }
        }

        private void SiftDown(int i, int count)
        {
            while (true)
            {
                var worst = i;
                var left = (2 * i) + 1;
                var right = left + 1;
                if (left < count && Better(_scores[worst], _labels[worst], _scores[left], _labels[left]))
                {
                    worst = left;
                }

                if (right < count && Better(_scores[worst], _labels[worst], _scores[right], _labels[right]))
                {
                    worst = right;
                }

                if (worst == i)
                {
                    return;
                }

                Swap(i, worst);
                i = worst;
            }
        }

        private void Swap(int a, int b)
        {
            (_labels[a], _labels[b]) = (_labels[b], _labels[a]);
            (_scores[a], _scores[b]) = (_scores[b], _scores[a]);
        }
    }
}
