using ImageSearch.Core;
using ImageSearch.LocalFeatures;

namespace ImageSearch.Imaging.Tests;

/// <summary>
/// The hostile-input corpus (<see cref="HostileCorpus"/>) through every decoding call and through
/// SIFT, as ingestion and queries run them: each file decodes or is refused with the kind its
/// damage calls for, never any other exception, and libvips' pixel memory returns to where it was.
/// </summary>
[Collection(nameof(SerialCollection))]
public sealed class HostileInputTests
{
    private static readonly VipsImageDecoder Decoder = new();
    private static readonly SiftExtractor Sift = new(Decoder, Microsoft.Extensions.Options.Options.Create(new LocalFeatureOptions()));
    private static readonly Lazy<IReadOnlyList<HostileFile>> Corpus = new(() => HostileCorpus.Build(Path.Combine(TestData.PhotosDirectory, TestData.VariantStems[0] + ".jpg")));

    public static TheoryData<string> Names => [.. Corpus.Value.Select(f => f.Name)];

    [Theory]
    [MemberData(nameof(Names))]
    public void Every_decoding_call_and_sift_decode_or_refuse_with_the_expected_kind(string name)
    {
        var file = Corpus.Value.Single(f => f.Name == name);
        // libvips keeps a few region buffers per thread for reuse; xunit may run each case on
        // another thread, so both counts are taken with this thread's cache released.
        VipsTestNative.ReleaseThreadBuffers();
        var before = VipsTestNative.TrackedMemory;
        var outcomes = new List<string>();
        foreach (var (call, run) in new (string, Action)[]
                 {
                     ("Prepare", () => Decoder.Prepare(file.Bytes, 224, 224)),
                     ("Prepare with a box", () => Decoder.Prepare(file.Bytes, 224, 224, new BoundingBox(0, 0, 1, 1))),
                     ("PrepareRegions", () => Decoder.PrepareRegions(file.Bytes, 224, 224, [new BoundingBox(0, 0, 1, 1), new BoundingBox(0, 0, 100_000, 100_000)])),
                     ("DecodeFit", () => Decoder.DecodeFit(file.Bytes, 384)),
                     ("Thumbnail", () => Decoder.Thumbnail(file.Bytes, 256)),
                     ("SIFT", () => Sift.Extract(file.Bytes)),
                 })
        {
            var outcome = Outcome(run);
            outcomes.Add($"{call}: {outcome?.Kind.ToString() ?? "decoded"}");
            if (outcome is null)
            {
                Assert.True(file.Expect is Expect.Accepted or Expect.AcceptedOrCorrupt, $"{name} ({file.Why}): {call} decoded it; expected {file.Expect}");
            }
            else
            {
                Assert.True(file.AllowedErrors.Contains(outcome.Kind), $"{name} ({file.Why}): {call} refused it as {outcome.Kind} ({outcome.Message}); expected {file.Expect}");
                Assert.False(string.IsNullOrWhiteSpace(outcome.Message));
            }
        }

        // A file is either an image or not: every call agrees (a box does not change the verdict).
        Assert.Single(outcomes.Select(o => o[(o.IndexOf(':', StringComparison.Ordinal) + 2)..]).Distinct());

        // Header reads never decode pixels; those that refuse say the same as the decodes.
        var header = Outcome(() => Decoder.ReadInfo(file.Bytes));
        if (file.Expect is Expect.Empty or Expect.Unsupported or Expect.TooLarge)
        {
            Assert.Equal(file.AllowedErrors.Single(), header?.Kind);
        }

        // Encoding a thumbnail runs on libvips' own worker thread, which lets go of its buffers a
        // moment after the call has returned: wait (bounded) for the count to come back.
        VipsTestNative.ReleaseThreadBuffers();
        var settled = System.Diagnostics.Stopwatch.StartNew();
        while (VipsTestNative.TrackedMemory != before && settled.Elapsed < TimeSpan.FromSeconds(30))
        {
            Thread.Sleep(10);
        }

        Assert.Equal(before, VipsTestNative.TrackedMemory);
    }

    [Fact]
    public void The_corpus_covers_every_attack_of_the_issue()
    {
        var corpus = Corpus.Value;
        Assert.Contains(corpus, f => f.Expect == Expect.Accepted && f.Name.Contains("cmyk", StringComparison.Ordinal));
        Assert.Contains(corpus, f => f.Expect == Expect.Accepted && f.Name.Contains("16", StringComparison.Ordinal));
        Assert.Contains(corpus, f => f.Name == "animated.gif");
        Assert.Equal(4, corpus.Count(f => f.Name.StartsWith("bomb-", StringComparison.Ordinal)));
        Assert.All(corpus.Where(f => f.Name.StartsWith("bomb-", StringComparison.Ordinal)), f => Assert.InRange(f.Bytes.Length, 1, 64 * 1024));

        // The animated GIF decodes as its first frame: the same pixels as the still frame it was made from.
        var animated = Decoder.DecodeFit(corpus.Single(f => f.Name == "animated.gif").Bytes, 160);
        var still = Decoder.DecodeFit(VipsTestNative.Gif(Decoder.DecodeFit(TestData.Original(TestData.VariantStems[0]), 160)), 160);
        Assert.InRange(TestData.MeanAbsDiff(still, animated), 0, 12);

        // Absurd orientations are ignored: the same pixels as without EXIF.
        var plain = Decoder.Prepare(TestData.Original(TestData.VariantStems[0]), 64, 64).Pixels;
        foreach (var name in new[] { "exif-orientation-0.jpg", "exif-orientation-9.jpg", "exif-orientation-65535.jpg", "exif-broken-ifd.jpg" })
        {
            var decoded = Decoder.Prepare(corpus.Single(f => f.Name == name).Bytes, 64, 64);
            Assert.Equal(plain.Pixels, decoded.Pixels.Pixels);
        }
    }

    [Fact]
    public void A_20000_square_image_allowed_by_raised_limits_decodes_in_bounded_memory()
    {
        // 400 megapixels: 400 MB as 8-bit grey, 1.2 GB as RGB. The decoder streams it top to bottom,
        // so neither the decode for the model nor SIFT's nor the thumbnail ever holds it whole.
        var huge = HostileCorpus.Huge;
        var limits = new DecodeLimits(MaxPixels: 500_000_000);
        using var peak = new PeakMemory();
        var prepared = Decoder.Prepare(huge, 224, 224, null, limits);
        var features = Sift.Extract(huge, null, limits);
        var thumbnail = Decoder.Thumbnail(huge, 256, limits);
        var grownBy = peak.Stop();

        Assert.Equal(new ImageInfo(HostileCorpus.HugeSide, HostileCorpus.HugeSide, "png", 1), prepared.Original);
        Assert.Equal(0, features.Count); // all black: no feature, and no failure
        Assert.True(thumbnail.Length > 100);
        Assert.True(grownBy < 150L << 20, $"resident memory grew by {grownBy >> 20} MB while decoding a 400-megapixel image");
    }

    [Fact]
    public void A_jpeg_narrower_than_the_verification_shrink_decodes_with_a_box()
    {
        // Found by the corpus: a box on a JPEG less than 8 pixels wide (or high) made the whole-image
        // check load it at shrink=8, 0 pixels wide, and libvips aborted the process (a failed
        // assertion, not an error). The check now never shrinks an axis below one pixel.
        foreach (var (width, height) in new[] { (1, 4000), (4000, 1), (7, 300), (300, 7), (3, 3) })
        {
            var jpeg = VipsTestNative.Jpeg(new RgbImage(width, height, new byte[width * height * 3]), 90);
            var box = new BoundingBox(0, 0, Math.Max(1, width / 2), Math.Max(1, height / 2));
            Assert.Equal((224, 224), (Decoder.Prepare(jpeg, 224, 224, box).Pixels.Width, 224));
            Assert.Equal(box.Width, Decoder.DecodeFit(jpeg, 8192, null, box).Width);
            Assert.NotEmpty(Decoder.PrepareRegions(jpeg, 64, 64, [box]));
        }
    }

    [Theory]
    [InlineData(6000, 4000)]
    [InlineData(4000, 6001)]
    public void A_big_grey_png_decodes_at_every_output_size(int width, int height)
    {
        // Found by the corpus: grey becomes sRGB by joining the band with itself, which read the
        // sequential PNG decode three times; libvips failed "out of order read at line N", so a valid
        // grey 24-megapixel PNG was refused as corrupt (at SIFT's 384 px among others).
        var png = HostileCorpus.GreyPng(width, height);
        foreach (var side in new[] { 64, 224, 256, 299, 384 })
        {
            Assert.Equal(side, Math.Max(Decoder.DecodeFit(png, side).Width, Decoder.DecodeFit(png, side).Height));
            Assert.Equal(side, Decoder.Prepare(png, side, side).Pixels.Width);
        }

        Assert.True(Decoder.Thumbnail(png, 256).Length > 100);
    }

    [Fact]
    public void Sift_stays_within_bounds_for_any_size_content_and_setting()
    {
        // The native shim over VLFeat at the edges of what it accepts: from 16 pixels (below that
        // the extractor returns no feature without calling it) to long thin strips, flat, noisy and
        // striped content, every first octave and feature budget the settings allow.
        var rng = new Random(11);
        var sizes = new List<(int, int)> { (16, 16), (16, 2000), (2000, 16), (17, 33), (15, 400), (400, 15), (1, 1) };
        for (var i = 0; i < 12; i++)
        {
            sizes.Add((16 + rng.Next(400), 16 + rng.Next(400)));
        }

        foreach (var (width, height) in sizes)
        {
            var pixels = new byte[width * height * 3];
            var content = rng.Next(4);
            for (var p = 0; p < pixels.Length; p++)
            {
                var x = (p / 3) % width;
                var y = (p / 3) / width;
                pixels[p] = content switch
                {
                    0 => 128,
                    1 => (byte)rng.Next(256),
                    2 => (byte)(((x / 3) + (y / 5)) % 2 * 255),
                    _ => (byte)((x * y) % 251),
                };
            }

            var options = new LocalFeatureOptions
            {
                FirstOctave = rng.Next(-1, 4),
                MaxFeatures = rng.Next(2) == 0 ? 16 : 4096,
                PeakThreshold = rng.Next(2) == 0 ? 0 : 0.02,
                EdgeThreshold = 1 + rng.Next(99),
            };
            var extractor = new SiftExtractor(Decoder, Microsoft.Extensions.Options.Options.Create(options));
            var set = extractor.Extract(new RgbImage(width, height, pixels));
            Assert.InRange(set.Count, 0, options.MaxFeatures);
            Assert.Equal(set.Count * LocalFeatureSet.DescriptorLength, set.Descriptors.Length);
            for (var f = 0; f < set.Count; f++)
            {
                var (fx, fy, sigma) = (set.Frames[4 * f], set.Frames[(4 * f) + 1], set.Frames[(4 * f) + 2]);
                Assert.True(fx >= -1 && fx <= width && fy >= -1 && fy <= height && sigma > 0 && float.IsFinite(set.Frames[(4 * f) + 3]),
                    $"{width}x{height} (content {content}, octave {options.FirstOctave}): feature {f} at {fx},{fy} sigma {sigma}");
            }
        }
    }

    private static InvalidImageException? Outcome(Action run)
    {
        try
        {
            run();
            return null;
        }
        catch (InvalidImageException e)
        {
            return e;
        }
    }

    /// <summary>Samples this process's resident set size on a background thread until stopped.</summary>
    private sealed class PeakMemory : IDisposable
    {
        private readonly long start = Rss();
        private readonly Thread thread;
        private long peak;
        private volatile bool stop;

        public PeakMemory()
        {
            peak = start;
            thread = new Thread(() =>
            {
                while (!stop)
                {
                    var now = Rss();
                    if (now > Interlocked.Read(ref peak))
                    {
                        Interlocked.Exchange(ref peak, now);
                    }

                    Thread.Sleep(2);
                }
            }) { IsBackground = true };
            thread.Start();
        }

        /// <summary>Stops sampling and returns how far above the start the resident set went.</summary>
        public long Stop()
        {
            stop = true;
            thread.Join();
            return Math.Max(Interlocked.Read(ref peak), Rss()) - start;
        }

        public void Dispose() => Stop();

        private static long Rss()
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                {
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
                }
            }

            throw new InvalidOperationException("No VmRSS in /proc/self/status.");
        }
    }
}
