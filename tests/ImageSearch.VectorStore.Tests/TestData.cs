using ImageSearch.Core;

namespace ImageSearch.VectorStore.Tests;

/// <summary>Seeded, deterministic vectors and records for the tests.</summary>
internal static class TestData
{
    public static readonly DateTimeOffset Epoch = new(2024, 5, 1, 12, 0, 0, TimeSpan.FromHours(2));

    public static ImageId Id(int n) => ImageId.FromContent(BitConverter.GetBytes(n));

    /// <summary>The vector of point <paramref name="n"/> at <paramref name="version"/> (not normalised: stores normalise).</summary>
    public static float[] Vector(int n, int dimensions, int version = 0)
    {
        // Not HashCode.Combine: it is seeded randomly per process.
        var rng = new Random(unchecked((n * 1_000_003) + (version * 7_919) + dimensions) & int.MaxValue);
        var v = new float[dimensions];
        for (var i = 0; i < v.Length; i++)
        {
            v[i] = (float)Gaussian(rng);
        }

        return v;
    }

    /// <summary>Payload that names its point and version, so a search hit can be checked against <see cref="Vector"/>.</summary>
    public static ImagePayload Payload(int n, int version = 0) =>
        new($"photos/{n}/{version}.jpg", 1000 + n, 640, 480, Convert.ToHexStringLower(BitConverter.GetBytes((long)n)).PadLeft(64, '0'), Epoch.AddSeconds(version));

    public static VectorRecord Record(int n, int dimensions, int version = 0) => new(Id(n), Vector(n, dimensions, version), Payload(n, version));

    public static List<VectorRecord> Records(int from, int count, int dimensions, int version = 0) =>
        Enumerable.Range(from, count).Select(n => Record(n, dimensions, version)).ToList();

    /// <summary>Point number and version encoded in a payload by <see cref="Payload"/>.</summary>
    public static (int N, int Version) Decode(ImagePayload payload)
    {
        var parts = payload.Path.Split('/', '.');
        return (int.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture), int.Parse(parts[2], System.Globalization.CultureInfo.InvariantCulture));
    }

    public static float[] Normalized(float[] v)
    {
        var norm = Math.Sqrt(Dot(v, v));
        var result = new float[v.Length];
        for (var i = 0; i < v.Length; i++)
        {
            result[i] = (float)(v[i] / norm);
        }

        return result;
    }

    public static float Dot(float[] a, float[] b)
    {
        var sum = 0d;
        for (var i = 0; i < a.Length; i++)
        {
            sum += (double)a[i] * b[i];
        }

        return (float)sum;
    }

    /// <summary>
    /// Unit vectors around <paramref name="clusters"/> random centres: the hard case for HNSW (dense
    /// neighbourhoods), closer to real embeddings than uniform noise.
    /// </summary>
    public static float[][] Clustered(int count, int dimensions, int clusters, double spread, int seed)
    {
        var rng = new Random(seed);
        var centres = Enumerable.Range(0, clusters).Select(_ => RandomUnit(rng, dimensions)).ToArray();
        var result = new float[count][];
        for (var i = 0; i < count; i++)
        {
            var centre = centres[rng.Next(clusters)];
            var v = new float[dimensions];
            for (var d = 0; d < dimensions; d++)
            {
                v[d] = (float)(centre[d] + (spread * Gaussian(rng) / Math.Sqrt(dimensions)));
            }

            result[i] = Normalized(v);
        }

        return result;
    }

    public static float[] RandomUnit(Random rng, int dimensions)
    {
        var v = new float[dimensions];
        for (var i = 0; i < v.Length; i++)
        {
            v[i] = (float)Gaussian(rng);
        }

        return Normalized(v);
    }

    private static double Gaussian(Random rng) =>
        Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
}

/// <summary>A fresh folder under the temp directory, deleted on dispose.</summary>
internal sealed class TempDirectory : IDisposable
{
    public TempDirectory()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "imagesearch-vs-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string Sub(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // Best effort: a leftover temp folder must not fail a test.
        }
    }
}
