using System.Reflection;
using ImageSearch.Core;

namespace ImageSearch.Embedding.Tests;

/// <summary>Paths and inputs shared by the tests.</summary>
internal static class TestSupport
{
    /// <summary>Folder holding the tiny stand-in models (copied to the test output).</summary>
    public static string TinyModelsDirectory { get; } = Path.Combine(AppContext.BaseDirectory, "Fixtures", "models");

    /// <summary>The repository root, recorded at build time.</summary>
    public static string RepoRoot { get; } = typeof(TestSupport).Assembly
        .GetCustomAttributes<AssemblyMetadataAttribute>()
        .Single(a => a.Key == "RepoRoot").Value!;

    public static EmbeddingOptions TinyOptions(string model = "tiny-cnn", string? modelsDirectory = null) => new()
    {
        ModelsDirectory = modelsDirectory ?? TinyModelsDirectory,
        Model = model,
        IntraOpThreads = 1,
    };

    /// <summary>
    /// The exporter's reference pattern: value of channel c (0=R, 1=G, 2=B) at row y, column x for
    /// seed s = (x (3 + c) + y (5 + 2 s) + 40 c + 97 s) mod 256.
    /// </summary>
    public static RgbImage PatternImage(int width, int height, int seed)
    {
        var pixels = new byte[width * height * 3];
        for (var y = 0; y < height; y++)
        {
            for (var x = 0; x < width; x++)
            {
                for (var c = 0; c < 3; c++)
                {
                    pixels[(((y * width) + x) * 3) + c] = (byte)(((x * (3 + c)) + (y * (5 + (2 * seed))) + (40 * c) + (97 * seed)) % 256);
                }
            }
        }

        return new RgbImage(width, height, pixels);
    }

    public static RgbImage RandomImage(int width, int height, Random random)
    {
        var pixels = new byte[width * height * 3];
        random.NextBytes(pixels);
        return new RgbImage(width, height, pixels);
    }

    public static double Norm(ReadOnlySpan<float> v)
    {
        var sum = 0.0;
        foreach (var x in v)
        {
            sum += (double)x * x;
        }

        return Math.Sqrt(sum);
    }

    public static double Cosine(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        var dot = 0.0;
        for (var i = 0; i < a.Length; i++)
        {
            dot += (double)a[i] * b[i];
        }

        return dot / (Norm(a) * Norm(b));
    }

    /// <summary>A fresh temporary folder, deleted on dispose.</summary>
    public sealed class TempDirectory : IDisposable
    {
        public TempDirectory() => Directory.CreateDirectory(Path);

        public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "imagesearch-embedding-tests-" + Guid.NewGuid().ToString("N"));

        /// <summary>Copies a tiny model folder in, so a test can add or break files.</summary>
        public string CopyTinyModel(string model)
        {
            var target = System.IO.Path.Combine(Path, model);
            Directory.CreateDirectory(target);
            foreach (var file in Directory.GetFiles(System.IO.Path.Combine(TinyModelsDirectory, model)))
            {
                File.Copy(file, System.IO.Path.Combine(target, System.IO.Path.GetFileName(file)));
            }

            return target;
        }

        public void Dispose() => Directory.Delete(Path, recursive: true);
    }
}
