using ImageSearch.Core;
using Microsoft.Extensions.DependencyInjection;

namespace ImageSearch.Imaging.Tests;

/// <summary>Thread safety, determinism and resource release.</summary>
[Collection(nameof(SerialCollection))]
public sealed class ConcurrencyTests
{
    private static readonly VipsImageDecoder Decoder = new();

    [Fact]
    public async Task Eight_threads_produce_the_same_bytes_as_one()
    {
        var inputs = Directory.GetFiles(TestData.VariantsDirectory)
            .Where(p => !p.EndsWith(".box", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)
            .Select(File.ReadAllBytes)
            .ToArray();
        var sequential = inputs.Select(Decode).ToArray();

        // Eight dedicated threads; each walks the inputs from a different start, so different
        // formats, boxes and failures overlap.
        var parallel = Enumerable.Range(0, 8).Select(t => Task.Factory.StartNew(() =>
        {
            var results = new string[inputs.Length];
            for (var k = 0; k < inputs.Length; k++)
            {
                var i = (k + (t * 5)) % inputs.Length;
                results[i] = Decode(inputs[i]);
            }

            return results;
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();
        var results = await Task.WhenAll(parallel);

        Assert.All(results, result => Assert.Equal(sequential, result));
        Assert.Contains(sequential, s => s.StartsWith("error Corrupt", StringComparison.Ordinal));
    }

    [Fact]
    public void Repeated_decodes_release_libvips_memory()
    {
        var inputs = Directory.GetFiles(TestData.VariantsDirectory, "*.*")
            .Where(p => !p.EndsWith(".box", StringComparison.Ordinal))
            .Select(File.ReadAllBytes)
            .ToArray();
        for (var round = 0; round < 5; round++)
        {
            foreach (var input in inputs)
            {
                _ = Decode(input);
                try
                {
                    _ = Decoder.Thumbnail(input, 100);
                }
                catch (InvalidImageException)
                {
                }
            }
        }

        // Unreleased images would keep their decode buffers: ~600 decodes of 480x360 photos. What
        // remains are per-thread buffer caches of libvips' worker threads (a few hundred KB).
        Assert.InRange(VipsTestNative.TrackedMemory, 0, 4L << 20);
        Assert.InRange(VipsTestNative.TrackedAllocations, 0, 64);
    }

    [Fact]
    public void Dependency_injection_registers_one_decoder()
    {
        var services = new ServiceCollection().AddVipsImageDecoder().AddVipsImageDecoder();
        Assert.Single(services, d => d.ServiceType == typeof(IImageDecoder));
        using var provider = services.BuildServiceProvider();
        Assert.IsType<VipsImageDecoder>(provider.GetRequiredService<IImageDecoder>());
        Assert.Same(provider.GetRequiredService<IImageDecoder>(), provider.GetRequiredService<IImageDecoder>());
    }

    /// <summary>A digest of the outcome: pixels of the whole image and of a box, or the error.</summary>
    private static string Decode(byte[] input)
    {
        try
        {
            var whole = Decoder.Prepare(input, 224, 224).Pixels.Pixels;
            var boxed = Decoder.Prepare(input, 160, 120, new BoundingBox(20, 10, 400, 300)).Pixels.Pixels;
            return Convert.ToHexString(System.Security.Cryptography.SHA256.HashData([.. whole, .. boxed]));
        }
        catch (InvalidImageException e)
        {
            return $"error {e.Kind}";
        }
    }
}

/// <summary>Tests that measure process-wide libvips counters run alone, after the parallel ones.</summary>
[CollectionDefinition(nameof(SerialCollection), DisableParallelization = true)]
public sealed class SerialCollection;
