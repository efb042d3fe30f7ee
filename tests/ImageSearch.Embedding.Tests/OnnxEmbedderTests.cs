using ImageSearch.Core;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace ImageSearch.Embedding.Tests;

/// <summary>The embedder end to end on the tiny stand-in models (Fixtures/make_tiny_models.py).</summary>
public class OnnxEmbedderTests
{
    private static List<RgbImage> RandomImages(int count, int seed, int width = 24, int height = 32)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => TestSupport.RandomImage(width, height, random)).ToList();
    }

    [Fact]
    public void ModelInfo_ComesFromTheManifest()
    {
        using var embedder = new OnnxEmbedder(TestSupport.TinyOptions());

        Assert.Equal(new EmbeddingModelInfo("tiny-cnn", "1", 32, 24, 32), embedder.Model);
        Assert.Equal(embedder.Model, embedder.RawModel);
        Assert.Null(embedder.Calibration);
        Assert.Equal("cpu", embedder.Device);
        Assert.EndsWith("libonnxruntime.so", embedder.NativeLibraryPath, StringComparison.Ordinal);
    }

    [Fact]
    public void Input_ReachesTheModelAsRawNchwPlanes()
    {
        // tiny-identity returns its [N,3,4,5] input flattened.
        using var embedder = new OnnxEmbedder(TestSupport.TinyOptions("tiny-identity"));
        var images = new[] { TestSupport.PatternImage(5, 4, seed: 0), TestSupport.PatternImage(5, 4, seed: 1) };

        var raw = embedder.EmbedRaw(images);

        for (var n = 0; n < images.Length; n++)
        {
            Assert.Equal(60, raw[n].Length);
            for (var c = 0; c < 3; c++)
            {
                for (var y = 0; y < 4; y++)
                {
                    for (var x = 0; x < 5; x++)
                    {
                        Assert.Equal(images[n].Pixels[(((y * 5) + x) * 3) + c], raw[n][(c * 20) + (y * 5) + x]);
                    }
                }
            }
        }
    }

    [Fact]
    public void Embed_ReturnsUnitVectors()
    {
        using var embedder = new OnnxEmbedder(TestSupport.TinyOptions());

        var vectors = embedder.Embed(RandomImages(5, seed: 1));

        Assert.Equal(5, vectors.Length);
        Assert.All(vectors, v =>
        {
            Assert.Equal(32, v.Length);
            Assert.Equal(1.0, TestSupport.Norm(v), 1e-5);
        });
    }

    [Theory]
    [InlineData(16)] // one run
    [InlineData(3)]  // split into runs of 3, 3, 1
    public void Batch_GivesTheSameVectorsAsSingles(int batchSize)
    {
        var options = TestSupport.TinyOptions();
        options.BatchSize = batchSize;
        using var embedder = new OnnxEmbedder(options);
        var images = RandomImages(7, seed: 2);

        var batch = embedder.EmbedRaw(images);

        for (var i = 0; i < images.Count; i++)
        {
            var single = embedder.EmbedRaw([images[i]])[0];
            for (var j = 0; j < single.Length; j++)
            {
                Assert.Equal(single[j], batch[i][j], 1e-5);
            }
        }
    }

    [Fact]
    public void ConcurrentCalls_GiveTheSameVectorsAsSequentialOnes()
    {
        using var embedder = new OnnxEmbedder(TestSupport.TinyOptions());
        var images = RandomImages(8, seed: 3);
        var expected = images.Select(image => embedder.Embed([image])[0]).ToArray();

        var actual = new float[images.Count][];
        Parallel.For(0, images.Count, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i => actual[i] = embedder.Embed([images[i]])[0]);

        for (var i = 0; i < images.Count; i++)
        {
            Assert.Equal(expected[i], actual[i]);
        }
    }

    [Fact]
    public void EmptyBatch_GivesNoVectors()
    {
        using var embedder = new OnnxEmbedder(TestSupport.TinyOptions());

        Assert.Empty(embedder.Embed([]));
    }

    [Fact]
    public void ImageOfTheWrongSize_IsRejected()
    {
        using var embedder = new OnnxEmbedder(TestSupport.TinyOptions());

        var error = Assert.Throws<ArgumentException>(() => embedder.Embed(RandomImages(1, seed: 4, width: 32, height: 24)));
        Assert.Contains("takes 24x32 RGB", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Calibration_IsAppliedAndNamedInTheModelVersion()
    {
        using var temp = new TestSupport.TempDirectory();
        var modelDirectory = temp.CopyTinyModel("tiny-cnn");
        var images = RandomImages(60, seed: 5);
        Calibration calibration;
        using (var uncalibrated = new OnnxEmbedder(TestSupport.TinyOptions(modelsDirectory: temp.Path)))
        {
            calibration = Calibration.Fit(uncalibrated.RawModel.Key, uncalibrated.EmbedRaw(images), new CalibrationFitOptions { OutputDimensions = 16 });
            calibration.Save(uncalibrated.CalibrationPath);
        }

        using var embedder = new OnnxEmbedder(TestSupport.TinyOptions(modelsDirectory: temp.Path));

        Assert.Equal(Path.Combine(modelDirectory, Calibration.FileName), embedder.CalibrationPath);
        Assert.Equal(calibration.Fingerprint, embedder.Calibration?.Fingerprint);
        Assert.Equal(new EmbeddingModelInfo("tiny-cnn", $"1+cal.{calibration.Fingerprint}", 16, 24, 32), embedder.Model);
        Assert.Equal(32, embedder.RawModel.Dimensions);
        var vectors = embedder.Embed(images[..4]);
        var raw = embedder.EmbedRaw(images[..4]);
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal(1.0, TestSupport.Norm(vectors[i]), 1e-5);
            Assert.Equal(calibration.Apply(raw[i]), vectors[i]);
        }
    }

    [Fact]
    public void CalibrationOfAnotherModel_IsRefused()
    {
        using var temp = new TestSupport.TempDirectory();
        var modelDirectory = temp.CopyTinyModel("tiny-cnn");
        var random = new Random(6);
        var vectors = Enumerable.Range(0, 10).Select(_ => Enumerable.Range(0, 32).Select(_ => (float)random.NextDouble()).ToArray()).ToList();
        Calibration.Fit("other@1", vectors, new CalibrationFitOptions { Whiten = false }).Save(Path.Combine(modelDirectory, Calibration.FileName));

        var error = Assert.Throws<InvalidDataException>(() => new OnnxEmbedder(TestSupport.TinyOptions(modelsDirectory: temp.Path)));
        Assert.Contains("fitted for other@1", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MissingModel_NamesTheMissingFile()
    {
        using var temp = new TestSupport.TempDirectory();

        var error = Assert.Throws<FileNotFoundException>(() => new OnnxEmbedder(TestSupport.TinyOptions("absent", temp.Path)));
        Assert.Contains(Path.Combine(temp.Path, "absent", "model.json"), error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ModelNotMatchingItsHash_IsRefused()
    {
        using var temp = new TestSupport.TempDirectory();
        var modelDirectory = temp.CopyTinyModel("tiny-cnn");
        File.AppendAllText(Path.Combine(modelDirectory, "model.onnx"), " ");

        var error = Assert.Throws<InvalidDataException>(() => new OnnxEmbedder(TestSupport.TinyOptions(modelsDirectory: temp.Path)));
        Assert.Contains("SHA-256", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ManifestNotMatchingTheGraph_IsRefused()
    {
        using var temp = new TestSupport.TempDirectory();
        var modelDirectory = temp.CopyTinyModel("tiny-cnn");
        var manifestPath = Path.Combine(modelDirectory, "model.json");
        File.WriteAllText(manifestPath, File.ReadAllText(manifestPath).Replace("\"dimensions\": 32", "\"dimensions\": 31", StringComparison.Ordinal));

        var error = Assert.Throws<InvalidDataException>(() => new OnnxEmbedder(TestSupport.TinyOptions(modelsDirectory: temp.Path)));
        Assert.Contains("model.json promises float[N,3,32,24] -> float[N,31]", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void InvalidOptions_ListEveryProblem()
    {
        var options = new EmbeddingOptions { Model = "../x", Device = "tpu", BatchSize = -1, IntraOpThreads = -1, BatchIntraOpThreads = 2000, CudaDeviceId = -1 };

        var error = Assert.Throws<OptionsValidationException>(() => new OnnxEmbedder(options));

        Assert.Equal(6, error.Failures.Count());
        Assert.Contains(error.Failures, f => f.Contains("Embedding:Device must be 'cpu' or 'cuda' (got 'tpu')", StringComparison.Ordinal));
    }

    [Fact]
    public void Run_size_zero_picks_small_runs_on_the_cpu_and_large_ones_on_cuda()
    {
        Assert.Equal(2, new EmbeddingOptions().EffectiveBatchSize);
        Assert.Equal(64, new EmbeddingOptions { Device = "cuda" }.EffectiveBatchSize);
        Assert.Equal(7, new EmbeddingOptions { Device = "cuda", BatchSize = 7 }.EffectiveBatchSize);
        Assert.Empty(new EmbeddingOptions().Validate());
    }

    [Fact]
    public void AddOnnxEmbedder_BindsConfigurationAndSharesOneInstance()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Embedding:ModelsDirectory"] = TestSupport.TinyModelsDirectory,
            ["Embedding:Model"] = "tiny-cnn",
            ["Embedding:IntraOpThreads"] = "1",
            ["Embedding:BatchSize"] = "4",
        }).Build();
        using var provider = new ServiceCollection()
            .AddOnnxEmbedder(configuration.GetSection(EmbeddingOptions.SectionName))
            .BuildServiceProvider(validateScopes: true);

        provider.GetRequiredService<IStartupValidator>().Validate();
        var embedder = provider.GetRequiredService<IEmbedder>();

        Assert.Same(provider.GetRequiredService<OnnxEmbedder>(), embedder);
        Assert.Equal(4, provider.GetRequiredService<IOptions<EmbeddingOptions>>().Value.BatchSize);
        Assert.Equal("tiny-cnn", embedder.Model.Name);
    }

    [Fact]
    public void AddOnnxEmbedder_ValidatesAtStart()
    {
        using var provider = new ServiceCollection()
            .AddOnnxEmbedder(options => options.Device = "gpu")
            .BuildServiceProvider();

        var error = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IStartupValidator>().Validate());
        Assert.Contains("got 'gpu'", error.Message, StringComparison.Ordinal);
    }
}
