namespace ImageSearch.VectorStore;

/// <summary>Whether a label is in an <see cref="HnswIndex"/>.</summary>
public enum HnswLabelState
{
    Absent = 0,
    Live = 1,
    Deleted = 2,
}

/// <summary>How an <see cref="HnswIndex"/> stores its vectors.</summary>
public enum HnswVectorFormat
{
    /// <summary>4 bytes per dimension: distances exact to float rounding.</summary>
    Float32 = 0,

    /// <summary>
    /// 1 byte per dimension plus a 4-byte scale per vector (symmetric: code = round(x * 127 / max|x|)):
    /// about a quarter of the vector memory. Distances are approximate (an error of a few 1e-3 on
    /// unit vectors), so callers that keep the float vectors rescore what the graph returns.
    /// </summary>
    Int8 = 1,
}

/// <summary>
/// A hnswlib <c>HierarchicalNSW&lt;float&gt;</c> graph over inner-product space, through the native
/// shim. Vectors must be unit length: the distance is <c>1 - dot</c>, i.e. <c>1 - cosine</c>.
/// </summary>
/// <remarks>
/// Thread-safety: <see cref="Search"/>, <see cref="GetState"/>, <see cref="TryGetVector"/> and the
/// counters may run concurrently with each other. Every other member mutates the graph and needs exclusive access
/// (no concurrent search either: <see cref="Resize"/> reallocates what searches read). Callers
/// provide that exclusion (see <see cref="EmbeddedVectorStore"/>). Disposal is safe against
/// in-flight calls: the native index is freed after the last one returns.
/// Limits: at most 2^32-1 elements; deleted points keep their slot (and capacity) until the graph is
/// rebuilt; labels are arbitrary non-negative integers.
/// </remarks>
public sealed unsafe class HnswIndex : IDisposable
{
    private readonly HnswIndexHandle _handle;

    private HnswIndex(HnswIndexHandle handle, int dimensions, HnswVectorFormat format)
    {
        _handle = handle;
        Dimensions = dimensions;
        Format = format;
    }

    private static readonly string[] KernelNames = ["scalar", "sse", "avx2", "avx512"];

    /// <summary>
    /// The inner-product kernel graphs use unless <see cref="Create"/> names another: "scalar",
    /// "sse", "avx2" (AVX2 + FMA) or "avx512" (AVX-512F). The shim is compiled for any x86-64
    /// (SSE4.2) and picks the kernel at run time from what the CPU supports, capped by the
    /// environment variable <c>IMAGESEARCH_HNSW_KERNEL</c> when it is set.
    /// </summary>
    public static string DistanceKernel => KernelName(HnswNative.SimdLevel());

    /// <summary>The fastest kernel this machine can run.</summary>
    public static string BestDistanceKernel => KernelName(HnswNative.BestKernel());

    /// <summary>The kernels this machine can run, slowest first ("scalar" always).</summary>
    public static IReadOnlyList<string> SupportedDistanceKernels => KernelNames[..(HnswNative.BestKernel() + 1)];

    /// <summary>The kernel this graph computes distances with (fixed when it was created or loaded).</summary>
    public string Kernel => KernelName(HnswNative.IndexKernel(_handle));

    public int Dimensions { get; }

    /// <summary>How the graph stores its vectors (fixed at creation; a snapshot must be loaded with the same).</summary>
    public HnswVectorFormat Format { get; }

    /// <summary>The graph's distance between a and b by <paramref name="kernel"/> in <paramref name="format"/> (tests compare each kernel with the scalar one).</summary>
    internal static float Distance(string kernel, ReadOnlySpan<float> a, ReadOnlySpan<float> b, HnswVectorFormat format = HnswVectorFormat.Float32)
    {
        if (a.Length != b.Length)
        {
            throw new ArgumentException("Vectors must have the same length.", nameof(b));
        }

        fixed (float* pa = a)
        fixed (float* pb = b)
        {
            HnswNative.Check(HnswNative.Distance(KernelLevel(kernel), format, pa, pb, (ulong)a.Length, out var distance));
            return distance;
        }
    }

    private static int KernelLevel(string kernel)
    {
        var level = Array.IndexOf(KernelNames, kernel);
        if (level < 0 || level > HnswNative.BestKernel())
        {
            throw new ArgumentException($"Distance kernel '{kernel}' is not one this machine runs ({string.Join(", ", SupportedDistanceKernels)}).", nameof(kernel));
        }

        return level;
    }

    private static string KernelName(int level) => level >= 0 && level < KernelNames.Length ? KernelNames[level] : "unknown";

    /// <summary>Elements in the graph, deleted ones included (they occupy capacity).</summary>
    public long Count => (long)HnswNative.Count(_handle);

    /// <summary>Elements marked deleted.</summary>
    public long DeletedCount => (long)HnswNative.DeletedCount(_handle);

    /// <summary>Elements the graph can hold before <see cref="Resize"/>.</summary>
    public long Capacity => (long)HnswNative.Capacity(_handle);

    /// <summary>Creates an empty graph.</summary>
    /// <param name="dimensions">Vector length.</param>
    /// <param name="capacity">Initial capacity (grow with <see cref="Resize"/>).</param>
    /// <param name="m">Links per node (level 0 holds 2*M).</param>
    /// <param name="efConstruction">Beam width while inserting.</param>
    /// <param name="seed">Seed of the level generator (same seed and insertion order give the same graph).</param>
    /// <param name="kernel">Distance kernel (one of <see cref="SupportedDistanceKernels"/>); null for <see cref="DistanceKernel"/>.</param>
    /// <param name="format">How vectors are stored.</param>
    public static HnswIndex Create(int dimensions, long capacity, int m = 16, int efConstruction = 200, ulong seed = 100, string? kernel = null,
        HnswVectorFormat format = HnswVectorFormat.Float32)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(dimensions, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(m, 2);
        ArgumentOutOfRangeException.ThrowIfLessThan(efConstruction, 1);
        var level = kernel is null ? -1 : KernelLevel(kernel);
        var status = HnswNative.Create(dimensions, (ulong)capacity, (ulong)m, (ulong)efConstruction, seed, level, format, out var handle);
        return Wrap(status, handle, dimensions, format);
    }

    /// <summary>
    /// Loads a file written by <see cref="Save"/>. Throws <see cref="HnswException"/> with
    /// <see cref="HnswStatus.Corrupt"/> when the file is damaged or was built for another dimension
    /// (checked structurally: every link must point inside the graph).
    /// </summary>
    /// <param name="path">The file.</param>
    /// <param name="dimensions">Expected vector length.</param>
    /// <param name="capacity">Capacity after loading (at least the file's element count is used).</param>
    /// <param name="seed">Seed for the level generator from here on (the file does not store it).</param>
    /// <param name="format">The format the file was saved with (another one is reported as <see cref="HnswStatus.Corrupt"/>).</param>
    public static HnswIndex Load(string path, int dimensions, long capacity, ulong seed = 100, HnswVectorFormat format = HnswVectorFormat.Float32)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentOutOfRangeException.ThrowIfLessThan(dimensions, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(capacity);
        var status = HnswNative.Load(path, dimensions, (ulong)capacity, seed, format, out var handle);
        return Wrap(status, handle, dimensions, format);
    }

    /// <summary>
    /// Adds a point. With <paramref name="replace"/>, an existing label gets the new vector in place
    /// (hnswlib's updatePoint, which also clears a delete mark); without it, an existing label is an
    /// error. Throws <see cref="HnswException"/> with <see cref="HnswStatus.Capacity"/> when full.
    /// A replace costs far more than an insert (it re-links the point's neighbours and their
    /// neighbours: ~20x an insert at M=16, 768 dimensions).
    /// </summary>
    public void Add(long label, ReadOnlySpan<float> vector, bool replace = false)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(label);
        CheckDimensions(vector);
        fixed (float* v = vector)
        {
            HnswNative.Check(HnswNative.Add(_handle, (ulong)label, v, replace ? 1 : 0));
        }
    }

    /// <summary>
    /// Adds new points on up to <paramref name="threads"/> threads (hnswlib's concurrent insertion).
    /// With more than one thread the graph depends on scheduling; with one it is deterministic.
    /// Checked first: every label new and distinct, all fitting in capacity (else nothing is added).
    /// </summary>
    /// <param name="labels">Labels of the points.</param>
    /// <param name="vectors">The vectors, one after another (labels.Length * Dimensions floats).</param>
    /// <param name="threads">Insertion threads.</param>
    public void AddBatch(ReadOnlySpan<long> labels, ReadOnlySpan<float> vectors, int threads = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        if (vectors.Length != (long)labels.Length * Dimensions)
        {
            throw new ArgumentException($"Expected {labels.Length} vectors of {Dimensions} dimensions.", nameof(vectors));
        }

        foreach (var label in labels)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(label, nameof(labels));
        }

        fixed (long* l = labels)
        fixed (float* v = vectors)
        {
            HnswNative.Check(HnswNative.AddBatch(_handle, (ulong*)l, v, (ulong)labels.Length, threads));
        }
    }

    /// <summary>
    /// Whether the graph holds exactly what adding <paramref name="vector"/> under
    /// <paramref name="label"/> would store (float32: the same bits; int8: the same codes); false
    /// when the label is absent.
    /// </summary>
    public bool Holds(long label, ReadOnlySpan<float> vector)
    {
        CheckDimensions(vector);
        if (GetState(label) == HnswLabelState.Absent)
        {
            return false;
        }

        fixed (float* v = vector)
        {
            HnswNative.Check(HnswNative.SameVector(_handle, (ulong)label, v, out var same));
            return same != 0;
        }
    }

    /// <summary>Copies the vector held for <paramref name="label"/> (deleted or not; int8: decoded, approximate); false when absent.</summary>
    public bool TryGetVector(long label, Span<float> destination)
    {
        if (destination.Length != Dimensions)
        {
            throw new ArgumentException($"Expected a span of {Dimensions} floats.", nameof(destination));
        }

        if (GetState(label) == HnswLabelState.Absent)
        {
            return false;
        }

        fixed (float* d = destination)
        {
            HnswNative.Check(HnswNative.GetVector(_handle, (ulong)label, d));
        }

        return true;
    }

    /// <summary>Hides a point from searches (it stays in the graph as a routing node).</summary>
    public void MarkDeleted(long label)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(label);
        HnswNative.Check(HnswNative.MarkDeleted(_handle, (ulong)label));
    }

    /// <summary>Makes a deleted point searchable again.</summary>
    public void UnmarkDeleted(long label)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(label);
        HnswNative.Check(HnswNative.UnmarkDeleted(_handle, (ulong)label));
    }

    public HnswLabelState GetState(long label) =>
        label < 0 ? HnswLabelState.Absent : (HnswLabelState)HnswNative.LabelState(_handle, (ulong)label);

    /// <summary>
    /// Up to <paramref name="k"/> nearest live points, closest first, into <paramref name="labels"/>
    /// and <paramref name="distances"/> (<c>1 - dot</c>). Returns how many were found.
    /// </summary>
    /// <param name="query">Unit-length query.</param>
    /// <param name="k">Results wanted.</param>
    /// <param name="ef">Beam width; max(ef, k) is used. Larger is slower and more accurate.</param>
    /// <param name="labels">Receives labels; at least <paramref name="k"/> long.</param>
    /// <param name="distances">Receives distances; at least <paramref name="k"/> long.</param>
    public int Search(ReadOnlySpan<float> query, int k, int ef, Span<long> labels, Span<float> distances)
    {
        CheckDimensions(query);
        ArgumentOutOfRangeException.ThrowIfLessThan(k, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(ef, 1);
        if (labels.Length < k || distances.Length < k)
        {
            throw new ArgumentException("Output spans must hold k results.", nameof(labels));
        }

        ulong count;
        fixed (float* q = query)
        fixed (long* l = labels)
        fixed (float* d = distances)
        {
            HnswNative.Check(HnswNative.Search(_handle, q, (ulong)k, (ulong)ef, (ulong*)l, d, out count));
        }

        return (int)count;
    }

    /// <summary>Changes capacity (never below <see cref="Count"/>). Not safe with concurrent searches.</summary>
    public void Resize(long capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        HnswNative.Check(HnswNative.Resize(_handle, (ulong)capacity));
    }

    /// <summary>
    /// Writes the graph to <paramref name="path"/> (replacing it), checks the written size and fsyncs
    /// the file. Making it visible atomically (rename, directory fsync) is the caller's job.
    /// </summary>
    public void Save(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        HnswNative.Check(HnswNative.Save(_handle, path));
    }

    public void Dispose() => _handle.Dispose();

    private static HnswIndex Wrap(HnswStatus status, HnswIndexHandle handle, int dimensions, HnswVectorFormat format)
    {
        if (status != HnswStatus.Ok)
        {
            var message = HnswNative.LastError();
            handle.Dispose();
            throw new HnswException(status, message);
        }

        return new HnswIndex(handle, dimensions, format);
    }

    private void CheckDimensions(ReadOnlySpan<float> vector)
    {
        if (vector.Length != Dimensions)
        {
            throw new ArgumentException($"Expected a vector of {Dimensions} dimensions, got {vector.Length}.", nameof(vector));
        }
    }
}
