using System.Buffers.Binary;
using System.Globalization;
using System.Numerics.Tensors;
using System.Security.Cryptography;
using System.Text;

namespace ImageSearch.Embedding;

/// <summary>How <see cref="Calibration.Fit"/> learns its transform.</summary>
public sealed record CalibrationFitOptions
{
    /// <summary>
    /// Learn a PCA-whitening projection besides the mean. When false the calibration only centres
    /// the features (output keeps the model's dimensions).
    /// </summary>
    public bool Whiten { get; init; } = true;

    /// <summary>
    /// Number of principal components kept (the embedding's dimensions); null keeps every component
    /// with non-negligible variance, which is at most min(D, samples - 1). Ignored when
    /// <see cref="Whiten"/> is false.
    /// </summary>
    public int? OutputDimensions { get; init; }

    /// <summary>
    /// Eigenvalue shrinkage β in [0, 1]: component i is scaled by 1 / sqrt((1 - β) λᵢ + β λ̄), λ̄ the
    /// mean eigenvalue (trace / D). 0 whitens fully (unit variance per component); 1 only rotates and
    /// scales uniformly. Full whitening lets low-variance, noisy components weigh as much as the
    /// dominant ones; some shrinkage keeps them in check.
    /// </summary>
    public double Shrinkage { get; init; } = 0.1;

    /// <summary>Which covariance form the PCA uses; tests force one to compare them.</summary>
    internal PcaMethod Method { get; init; } = PcaMethod.Auto;
}

/// <summary>Which matrix the PCA decomposes.</summary>
internal enum PcaMethod
{
    /// <summary>Covariance (D x D) when samples exceed D, otherwise the Gram matrix.</summary>
    Auto,

    /// <summary>The D x D covariance of the features.</summary>
    Covariance,

    /// <summary>The n x n Gram matrix of the centred samples; cheaper when n &lt; D.</summary>
    Gram,
}

/// <summary>
/// The post-processing learned from a model's raw features on a sample of images: subtract the mean,
/// optionally project onto whitened principal components, then L2-normalise. Stored next to the
/// model as <see cref="FileName"/>; immutable and thread-safe.
/// </summary>
/// <remarks>
/// <para>File format (version 1), all numbers little-endian:</para>
/// <code>
/// offset  type         field
/// 0       byte[8]      magic "ISEMBCAL"
/// 8       uint32       format version = 1
/// 12      uint32       D: input dimensions (the model's raw output size)
/// 16      uint32       K: output dimensions of the projection; 0 = none (centring only, output has D)
/// 20      uint32       N: number of raw vectors it was fitted on
/// 24      float32      β: eigenvalue shrinkage used (0 when K = 0)
/// 28      uint32       L: byte length of the model key
/// 32      byte[L]      model key, UTF-8 "name@version" of the model whose raw output it fits
/// 32+L    float32[D]   mean
/// ...     float32[K*D] projection, row-major; row i = uᵢ / sqrt((1-β) λᵢ + β trace/D), uᵢ the
///                      i-th unit eigenvector of the covariance, sign chosen so that its largest
///                      entry is positive
/// ...     float32[K]   λ₀ ≥ … ≥ λ_{K-1}: the covariance eigenvalues (before shrinkage), for reference
/// end-32  byte[32]     SHA-256 of every preceding byte
/// </code>
/// <para>
/// Fitting is deterministic: the same vectors in the same order give byte-identical files on the
/// same hardware and runtime (vectorised sums may round differently on other instruction sets).
/// </para>
/// </remarks>
public sealed class Calibration
{
    /// <summary>The calibration's file name inside a model folder.</summary>
    public const string FileName = "calibration.bin";

    private const int FormatVersion = 1;
    private const int HashLength = 32;
    private static readonly byte[] Magic = "ISEMBCAL"u8.ToArray();

    // Components whose variance is below this fraction of the largest are numerically zero (at most
    // n - 1 components carry variance after centring n samples); they are never kept.
    private const double RankTolerance = 1e-9;

    private readonly float[] mean;
    private readonly float[] projection;
    private readonly float[] eigenvalues;

    private Calibration(string modelKey, int sampleCount, float shrinkage, float[] mean, float[] projection, float[] eigenvalues)
    {
        ModelKey = modelKey;
        SampleCount = sampleCount;
        Shrinkage = shrinkage;
        this.mean = mean;
        this.projection = projection;
        this.eigenvalues = eigenvalues;
        ComponentCount = eigenvalues.Length;
        Bytes = Serialise();
        Fingerprint = Convert.ToHexStringLower(Bytes.AsSpan(Bytes.Length - HashLength, 4));
    }

    /// <summary>"name@version" of the model whose raw output this calibration was fitted on.</summary>
    public string ModelKey { get; }

    /// <summary>Dimensions of the raw vectors it takes (D).</summary>
    public int InputDimensions => mean.Length;

    /// <summary>Dimensions of the vectors it produces: K when whitening, otherwise D.</summary>
    public int OutputDimensions => ComponentCount > 0 ? ComponentCount : InputDimensions;

    /// <summary>Number of whitened principal components (K); 0 when the calibration only centres.</summary>
    public int ComponentCount { get; }

    /// <summary>How many raw vectors it was fitted on.</summary>
    public int SampleCount { get; }

    /// <summary>Eigenvalue shrinkage β used for the whitening (0 when not whitening).</summary>
    public float Shrinkage { get; }

    /// <summary>The mean raw vector that is subtracted.</summary>
    public ReadOnlySpan<float> Mean => mean;

    /// <summary>The covariance eigenvalues of the kept components, descending (empty when not whitening).</summary>
    public ReadOnlySpan<float> Eigenvalues => eigenvalues;

    /// <summary>First 8 hex digits of the file's SHA-256: names this calibration in model versions and logs.</summary>
    public string Fingerprint { get; }

    /// <summary>The serialised file content.</summary>
    private byte[] Bytes { get; }

    /// <summary>
    /// Learns the mean and (by default) a PCA-whitening projection from raw model outputs.
    /// </summary>
    /// <param name="modelKey">"name@version" of the model that produced <paramref name="rawVectors"/>.</param>
    /// <param name="rawVectors">At least two raw vectors of equal length, e.g. from <see cref="OnnxEmbedder.EmbedRaw(System.Collections.Generic.IReadOnlyList{ImageSearch.Core.RgbImage})"/>.</param>
    /// <param name="options">What to learn; defaults to whitening all meaningful components with β = 0.1.</param>
    /// <remarks>
    /// <para>
    /// PCA decomposes the D x D covariance when there are more samples than dimensions, and
    /// otherwise the n x n Gram matrix of the centred samples, whose non-zero eigenvalues are the
    /// same and whose eigenvectors map onto the covariance's (uᵢ = Xᵀvᵢ / sqrt((n-1) λᵢ)): with
    /// 1000 samples of 1792-d features that decomposes a 1000² matrix instead of a 1792² one.
    /// The eigensolver is O(m³) in that size m. Measured on a 2-core machine: D = 1792 with
    /// 2000 samples (covariance) 6 s, with 1000 samples (Gram) 2 s; D = 768 with 3000 samples 1.2 s.
    /// </para>
    /// <para>Memory: the samples are held in double precision (8 n D bytes) plus one m x m matrix.</para>
    /// </remarks>
    public static Calibration Fit(string modelKey, IReadOnlyList<float[]> rawVectors, CalibrationFitOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(modelKey);
        ArgumentNullException.ThrowIfNull(rawVectors);
        options ??= new CalibrationFitOptions();
        if (options.Shrinkage is < 0 or > 1 || double.IsNaN(options.Shrinkage))
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.Shrinkage, "Shrinkage must be within [0, 1].");
        }

        var n = rawVectors.Count;
        if (n < 2)
        {
            throw new ArgumentException($"Calibration needs at least 2 vectors; got {n}.", nameof(rawVectors));
        }

        var dims = rawVectors[0]?.Length ?? 0;
        if (dims == 0)
        {
            throw new ArgumentException("Vectors must not be empty.", nameof(rawVectors));
        }

        if (options.OutputDimensions is { } requested && (requested < 1 || requested > dims))
        {
            throw new ArgumentOutOfRangeException(nameof(options), requested, $"OutputDimensions must be within [1, {dims}].");
        }

        var centred = Centre(rawVectors, dims, out var meanVector);
        if (!options.Whiten)
        {
            return new Calibration(modelKey, n, 0f, ToFloat(meanVector), [], []);
        }

        var useGram = options.Method == PcaMethod.Gram || (options.Method == PcaMethod.Auto && n <= dims);
        var (values, components) = useGram ? PcaByGram(centred, dims) : PcaByCovariance(centred, dims);

        var rank = 0;
        var largest = Math.Max(values[0], 0);
        while (rank < values.Length && values[rank] > largest * RankTolerance && values[rank] > 0)
        {
            rank++;
        }

        if (rank == 0)
        {
            throw new ArgumentException($"The {n} vectors are all equal; there is nothing to whiten.", nameof(rawVectors));
        }

        var keep = options.OutputDimensions ?? rank;
        if (keep > rank)
        {
            throw new ArgumentException(
                $"Asked for {keep} whitened dimensions, but the {n} vectors only vary along {rank} directions. " +
                "Calibrate on more images or ask for fewer dimensions.", nameof(options));
        }

        // Mean eigenvalue over all D dimensions = trace / D (tiny negative round-off counts as zero).
        var trace = 0.0;
        foreach (var v in values)
        {
            trace += Math.Max(v, 0);
        }

        var meanEigenvalue = trace / dims;
        var beta = options.Shrinkage;
        var projectionRows = new float[keep * dims];
        var keptValues = new float[keep];
        for (var i = 0; i < keep; i++)
        {
            var row = components.AsSpan(i * dims, dims);
            var scale = 1.0 / Math.Sqrt(((1 - beta) * values[i]) + (beta * meanEigenvalue));
            // Eigenvectors are defined up to sign; fix it so the file does not depend on solver details.
            var pivot = TensorPrimitives.IndexOfMaxMagnitude<double>(row);
            if (row[pivot] < 0)
            {
                scale = -scale;
            }

            var target = projectionRows.AsSpan(i * dims, dims);
            for (var j = 0; j < dims; j++)
            {
                target[j] = (float)(row[j] * scale);
            }

            keptValues[i] = (float)values[i];
        }

        return new Calibration(modelKey, n, (float)beta, ToFloat(meanVector), projectionRows, keptValues);
    }

    /// <summary>Reads a calibration file; throws <see cref="InvalidDataException"/> when it is malformed or corrupt.</summary>
    public static Calibration Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return Parse(File.ReadAllBytes(path), path);
    }

    /// <summary>Parses the bytes of a calibration file; <paramref name="source"/> names it in error messages.</summary>
    public static Calibration Parse(ReadOnlySpan<byte> data, string source = "calibration data")
    {
        const int HeaderLength = 32;
        if (data.Length < HeaderLength + HashLength || !data[..Magic.Length].SequenceEqual(Magic))
        {
            throw new InvalidDataException($"{source} is not an embedding calibration file (bad magic or too short).");
        }

        var version = BinaryPrimitives.ReadUInt32LittleEndian(data[8..]);
        if (version != FormatVersion)
        {
            throw new InvalidDataException($"{source} has calibration format version {version}; this build reads version {FormatVersion}.");
        }

        var expectedHash = SHA256.HashData(data[..^HashLength]);
        if (!data[^HashLength..].SequenceEqual(expectedHash))
        {
            throw new InvalidDataException($"{source} is corrupt (checksum mismatch).");
        }

        var dims = BinaryPrimitives.ReadUInt32LittleEndian(data[12..]);
        var components = BinaryPrimitives.ReadUInt32LittleEndian(data[16..]);
        var samples = BinaryPrimitives.ReadUInt32LittleEndian(data[20..]);
        var shrinkage = BinaryPrimitives.ReadSingleLittleEndian(data[24..]);
        var keyLength = BinaryPrimitives.ReadUInt32LittleEndian(data[28..]);
        if (dims == 0 || dims > 1 << 16 || components > dims || samples > int.MaxValue || keyLength > 1024)
        {
            throw new InvalidDataException($"{source} has an impossible header (D={dims}, K={components}, key length {keyLength}).");
        }

        var expectedLength = HeaderLength + (long)keyLength + (4L * ((long)dims + ((long)components * dims) + components)) + HashLength;
        if (data.Length != expectedLength)
        {
            throw new InvalidDataException($"{source} is {data.Length} bytes; its header implies {expectedLength}.");
        }

        var offset = HeaderLength;
        var modelKey = Encoding.UTF8.GetString(data.Slice(offset, (int)keyLength));
        offset += (int)keyLength;
        var meanVector = ReadFloats(data, ref offset, (int)dims);
        var projectionRows = ReadFloats(data, ref offset, (int)(components * dims));
        var values = ReadFloats(data, ref offset, (int)components);
        if (!AllFinite(meanVector) || !AllFinite(projectionRows) || !float.IsFinite(shrinkage))
        {
            throw new InvalidDataException($"{source} contains non-finite values.");
        }

        return new Calibration(modelKey, (int)samples, shrinkage, meanVector, projectionRows, values);
    }

    /// <summary>Writes the file atomically (temporary file, then rename), replacing any existing one.</summary>
    public void Save(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var full = Path.GetFullPath(path);
        var temporary = full + "." + Guid.NewGuid().ToString("N")[..8] + ".tmp";
        try
        {
            File.WriteAllBytes(temporary, Bytes);
            File.Move(temporary, full, overwrite: true);
        }
        finally
        {
            File.Delete(temporary);
        }
    }

    /// <summary>The file content <see cref="Save"/> writes.</summary>
    public byte[] ToBytes() => (byte[])Bytes.Clone();

    /// <summary>Centres, projects (when whitening) and L2-normalises one raw vector into a new array.</summary>
    public float[] Apply(ReadOnlySpan<float> raw)
    {
        var result = new float[OutputDimensions];
        Apply(raw, result);
        return result;
    }

    /// <summary>
    /// Centres, projects (when whitening) and L2-normalises <paramref name="raw"/> into
    /// <paramref name="destination"/> (length <see cref="OutputDimensions"/>). A vector with zero
    /// norm after projection stays zero; non-finite input throws <see cref="ArithmeticException"/>.
    /// </summary>
    public void Apply(ReadOnlySpan<float> raw, Span<float> destination)
    {
        Project(raw, destination);
        Normalise(destination);
    }

    /// <summary>Centres and projects one raw vector without the final normalisation (the space a projection head is trained in).</summary>
    public float[] ApplyUnnormalised(ReadOnlySpan<float> raw)
    {
        var result = new float[OutputDimensions];
        Project(raw, result);
        return result;
    }

    /// <summary>
    /// This calibration followed by a learned linear head <paramref name="head"/> (K x K, row-major,
    /// K = <see cref="ComponentCount"/>): the head is folded into the projection (rows of head x
    /// projection), so the file format and the cost of applying it do not change; the fingerprint does,
    /// so an index built with the head is a new index.
    /// </summary>
    public Calibration WithHead(ReadOnlySpan<float> head)
    {
        var k = ComponentCount;
        if (k == 0)
        {
            throw new InvalidOperationException("A projection head needs a whitening calibration (it acts on the whitened components).");
        }

        if (head.Length != k * k)
        {
            throw new ArgumentException($"The head must be {k}x{k} ({k * k} values), got {head.Length}.", nameof(head));
        }

        var dims = InputDimensions;
        var combined = new float[k * dims];
        for (var i = 0; i < k; i++)
        {
            var row = combined.AsSpan(i * dims, dims);
            for (var j = 0; j < k; j++)
            {
                var w = head[(i * k) + j];
                if (w != 0)
                {
                    TensorPrimitives.MultiplyAdd(projection.AsSpan(j * dims, dims), w, row, row);
                }
            }
        }

        if (!combined.All(float.IsFinite))
        {
            throw new ArgumentException("The head has non-finite values.", nameof(head));
        }

        return new Calibration(ModelKey, SampleCount, Shrinkage, (float[])mean.Clone(), combined, (float[])eigenvalues.Clone());
    }

    /// <summary>Centring and projection without the final normalisation (what the whitening statistics describe).</summary>
    internal void Project(ReadOnlySpan<float> raw, Span<float> destination)
    {
        if (raw.Length != InputDimensions)
        {
            throw new ArgumentException($"Expected a {InputDimensions}-d raw vector, got {raw.Length}.", nameof(raw));
        }

        if (destination.Length != OutputDimensions)
        {
            throw new ArgumentException($"Destination must hold {OutputDimensions} values, got {destination.Length}.", nameof(destination));
        }

        if (ComponentCount == 0)
        {
            TensorPrimitives.Subtract(raw, mean, destination);
            return;
        }

        var dims = InputDimensions;
        var centred = dims <= 4096 ? stackalloc float[dims] : new float[dims];
        TensorPrimitives.Subtract(raw, mean, centred);
        for (var i = 0; i < ComponentCount; i++)
        {
            destination[i] = TensorPrimitives.Dot<float>(projection.AsSpan(i * dims, dims), centred);
        }
    }

    /// <summary>Scales to unit L2 norm in place; zero stays zero, non-finite throws.</summary>
    internal static void Normalise(Span<float> vector)
    {
        var norm = TensorPrimitives.Norm<float>(vector);
        if (!float.IsFinite(norm))
        {
            throw new ArithmeticException("The embedding contains non-finite values; the model or its input is broken.");
        }

        if (norm > 0)
        {
            TensorPrimitives.Divide(vector, norm, vector);
        }
    }

    /// <inheritdoc />
    public override string ToString() => ComponentCount > 0
        ? string.Create(CultureInfo.InvariantCulture, $"{Fingerprint}: {ModelKey}, whitened {InputDimensions}->{ComponentCount} (β={Shrinkage}), {SampleCount} samples")
        : string.Create(CultureInfo.InvariantCulture, $"{Fingerprint}: {ModelKey}, centred {InputDimensions}-d, {SampleCount} samples");

    private static double[][] Centre(IReadOnlyList<float[]> vectors, int dims, out double[] meanVector)
    {
        var n = vectors.Count;
        meanVector = new double[dims];
        var centred = new double[n][];
        for (var s = 0; s < n; s++)
        {
            var v = vectors[s];
            if (v is null || v.Length != dims)
            {
                throw new ArgumentException($"Vector {s} has {v?.Length ?? 0} values; vector 0 has {dims}.", nameof(vectors));
            }

            if (!AllFinite(v))
            {
                throw new ArgumentException($"Vector {s} contains non-finite values.", nameof(vectors));
            }

            var row = new double[dims];
            TensorPrimitives.ConvertChecked<float, double>(v, row);
            TensorPrimitives.Add<double>(meanVector, row, meanVector);
            centred[s] = row;
        }

        TensorPrimitives.Divide(meanVector, n, meanVector);
        foreach (var row in centred)
        {
            TensorPrimitives.Subtract<double>(row, meanVector, row);
        }

        return centred;
    }

    /// <summary>PCA from the D x D covariance; returns eigenvalues and unit eigenvectors as rows.</summary>
    private static (double[] Values, double[] Components) PcaByCovariance(double[][] centred, int dims)
    {
        var n = centred.Length;
        var covariance = new double[dims * dims];
        // Upper triangle by rank-1 updates, a block of rows at a time so the block stays in cache
        // while all samples stream past; blocks are independent, so they run in parallel and each
        // sums its samples in the same order (deterministic).
        const int BlockRows = 32;
        var blocks = (dims + BlockRows - 1) / BlockRows;
        Parallel.For(0, blocks, block =>
        {
            var first = block * BlockRows;
            var last = Math.Min(dims, first + BlockRows);
            foreach (var x in centred)
            {
                for (var i = first; i < last; i++)
                {
                    var row = covariance.AsSpan((i * dims) + i, dims - i);
                    TensorPrimitives.MultiplyAdd(x.AsSpan(i), x[i], row, row);
                }
            }
        });

        var denominator = n - 1.0;
        for (var i = 0; i < dims; i++)
        {
            for (var j = i; j < dims; j++)
            {
                var value = covariance[(i * dims) + j] / denominator;
                covariance[(i * dims) + j] = value;
                covariance[(j * dims) + i] = value;
            }
        }

        return SymmetricEigen.Decompose(covariance, dims);
    }

    /// <summary>
    /// PCA from the n x n Gram matrix G = X Xᵀ / (n-1) of the centred samples X: G vᵢ = λᵢ vᵢ gives the
    /// covariance eigenvector uᵢ = Xᵀ vᵢ / sqrt((n-1) λᵢ) with the same λᵢ. Components with λ ≤ 0 come
    /// back as zero rows; the caller never keeps them.
    /// </summary>
    private static (double[] Values, double[] Components) PcaByGram(double[][] centred, int dims)
    {
        var n = centred.Length;
        var gram = new double[n * n];
        var denominator = n - 1.0;
        Parallel.For(0, n, a =>
        {
            for (var b = a; b < n; b++)
            {
                gram[(a * n) + b] = TensorPrimitives.Dot<double>(centred[a], centred[b]) / denominator;
            }
        });
        for (var a = 0; a < n; a++)
        {
            for (var b = a + 1; b < n; b++)
            {
                gram[(b * n) + a] = gram[(a * n) + b];
            }
        }

        var (values, vectors) = SymmetricEigen.Decompose(gram, n);
        var count = Math.Min(n, dims);
        var components = new double[count * dims];
        Parallel.For(0, count, i =>
        {
            if (values[i] <= 0)
            {
                return;
            }

            var u = components.AsSpan(i * dims, dims);
            var v = vectors.AsSpan(i * n, n);
            for (var s = 0; s < n; s++)
            {
                TensorPrimitives.MultiplyAdd(centred[s], v[s], u, u);
            }

            TensorPrimitives.Divide(u, Math.Sqrt(denominator * values[i]), u);
        });

        return (values[..count], components);
    }

    private static bool AllFinite(ReadOnlySpan<float> values)
    {
        foreach (var value in values)
        {
            if (!float.IsFinite(value))
            {
                return false;
            }
        }

        return true;
    }

    private static float[] ToFloat(double[] values)
    {
        var result = new float[values.Length];
        TensorPrimitives.ConvertTruncating<double, float>(values, result);
        return result;
    }

    private static float[] ReadFloats(ReadOnlySpan<byte> data, ref int offset, int count)
    {
        var result = new float[count];
        for (var i = 0; i < count; i++)
        {
            result[i] = BinaryPrimitives.ReadSingleLittleEndian(data[(offset + (4 * i))..]);
        }

        offset += 4 * count;
        return result;
    }

    private byte[] Serialise()
    {
        var key = Encoding.UTF8.GetBytes(ModelKey);
        var length = 32 + key.Length + (4 * (mean.Length + projection.Length + eigenvalues.Length)) + HashLength;
        var data = new byte[length];
        var span = data.AsSpan();
        Magic.CopyTo(span);
        BinaryPrimitives.WriteUInt32LittleEndian(span[8..], FormatVersion);
        BinaryPrimitives.WriteUInt32LittleEndian(span[12..], (uint)mean.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(span[16..], (uint)ComponentCount);
        BinaryPrimitives.WriteUInt32LittleEndian(span[20..], (uint)SampleCount);
        BinaryPrimitives.WriteSingleLittleEndian(span[24..], Shrinkage);
        BinaryPrimitives.WriteUInt32LittleEndian(span[28..], (uint)key.Length);
        key.CopyTo(span[32..]);
        var offset = 32 + key.Length;
        foreach (var array in (float[][])[mean, projection, eigenvalues])
        {
            foreach (var value in array)
            {
                BinaryPrimitives.WriteSingleLittleEndian(span[offset..], value);
                offset += 4;
            }
        }

        SHA256.HashData(span[..offset], span[offset..]);
        return data;
    }
}
