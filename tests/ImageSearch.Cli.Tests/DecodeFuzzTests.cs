using ImageSearch.Cli.Reliability;
using ImageSearch.Core;
using ImageSearch.Imaging;
using ImageSearch.LocalFeatures;

namespace ImageSearch.Cli.Tests;

/// <summary>
/// The short, seeded version of <c>bench fuzz</c>: mutated JPEG, PNG, WebP, GIF, TIFF, HEIC and AVIF
/// files through every decoding call and SIFT find no exception other than a refusal, no slow call
/// and no libvips memory left behind. The bench runs the same fuzzer for minutes.
/// </summary>
/// <remarks>
/// Runs alone: it counts the process's file descriptors, and another test class running beside it
/// (RetrievalMetricsTests starts score.py with redirected pipes) made that count flaky.
/// </remarks>
[Collection(nameof(DecodeFuzzTests))]
public sealed class DecodeFuzzTests
{
    private static readonly VipsImageDecoder Decoder = new();

    [Fact]
    public void A_seeded_mutation_run_over_every_format_finds_nothing()
    {
        var seeds = DecodeFuzzer.MakeSeeds(Decoder, File.ReadAllBytes(Photo()));
        Assert.Contains(seeds, s => s.Name == "small.webp");
        Assert.Contains(seeds, s => s.Name == "animated.gif");
        var sift = new SiftExtractor(Decoder, Microsoft.Extensions.Options.Options.Create(new LocalFeatureOptions()));
        // Generous per-call limit: only a hang-like call should trip it on a loaded CI machine.
        var fuzzer = new DecodeFuzzer(Decoder, sift, DecodeLimits.Default, TimeSpan.FromSeconds(20));

        var report = fuzzer.Run(seeds, seed: 20240611, iterations: 400, duration: null, workFolder: null);

        Assert.True(report.Findings.Count == 0, string.Join("\n", report.Findings.Select(f => $"{f.Iteration} {f.Seed} [{f.Mutation}] {f.Call}: {f.Problem}")));
        Assert.Equal(400, report.Iterations);
        Assert.True(report.Decoded > 20, $"only {report.Decoded} inputs decoded: the mutations are too destructive to reach the pixel decoders");
        Assert.True(report.Refused[ImageErrorKind.Corrupt] > 20, "mutations reach the loaders' error paths");
        Assert.Equal(0, report.VipsBytesGrowth);
        Assert.InRange(report.FileDescriptorGrowth, -8, 8);
    }

    [Fact]
    public void The_same_seed_gives_the_same_mutations()
    {
        FuzzSeed[] seeds = [new("a", [.. Enumerable.Range(0, 2000).Select(i => (byte)i)]), new("b", new byte[300])];
        for (var seed = 0; seed < 20; seed++)
        {
            var first = DecodeFuzzer.Mutate(seeds[0].Bytes, new Random(seed), seeds, out var firstWhat);
            var again = DecodeFuzzer.Mutate(seeds[0].Bytes, new Random(seed), seeds, out var againWhat);
            Assert.Equal(first, again);
            Assert.Equal(firstWhat, againWhat);
            Assert.NotEqual("none", firstWhat);
        }
    }

    private static string Photo()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var photos = Path.Combine(dir.FullName, "test-data", "photos");
            if (File.Exists(Path.Combine(dir.FullName, "ImageSearch.sln")))
            {
                return Directory.GetFiles(photos, "*.jpg").Order(StringComparer.Ordinal).First();
            }
        }

        throw new InvalidOperationException("Repository root not found; run ./imagesearch test (it fetches test-data/).");
    }
}

/// <summary>Keeps <see cref="DecodeFuzzTests"/> from running in parallel with any other test.</summary>
[CollectionDefinition(nameof(DecodeFuzzTests), DisableParallelization = true)]
public sealed class DecodeFuzzCollection;
