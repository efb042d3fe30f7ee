using System.Diagnostics;
using System.Globalization;
using ImageSearch.Core;
using ImageSearch.Imaging;

namespace ImageSearch.Cli.Reliability;

/// <summary>A well-formed input the fuzzer mutates.</summary>
public sealed record FuzzSeed(string Name, byte[] Bytes);

/// <summary>
/// Something the decode path must never do: throw anything but <see cref="InvalidImageException"/>,
/// take longer than the slow-call limit, or leave libvips memory or file descriptors behind.
/// <see cref="SavedAs"/>: the input, written for replay (<c>bench fuzz --replay FILE</c>).
/// </summary>
public sealed record FuzzFinding(int Iteration, string Seed, string Mutation, string Call, string Problem, string? SavedAs);

/// <summary>What a fuzz run did and found.</summary>
public sealed record FuzzReport(
    int Iterations,
    int Decoded,
    IReadOnlyDictionary<ImageErrorKind, int> Refused,
    IReadOnlyList<FuzzFinding> Findings,
    double SlowestCallMs,
    string SlowestCase,
    long VipsBytesGrowth,
    long ResidentGrowth,
    int FileDescriptorGrowth,
    TimeSpan Elapsed);

/// <summary>
/// A seeded mutation fuzzer of the decode path as ingestion and queries run it: the header read,
/// the model's decode (whole image and a box), the region decode, the thumbnail and SIFT, over
/// mutated JPEG, PNG, WebP, GIF, TIFF, HEIC and AVIF files. Every call must decode or refuse with
/// <see cref="InvalidImageException"/>; anything else, a call slower than the limit, or libvips
/// memory, resident memory or file descriptors that keep growing, is a finding. The same seed gives
/// the same inputs, so a finding is reproduced by its iteration number.
/// </summary>
/// <remarks>
/// A native crash cannot be caught in process: before each input is decoded it is written to
/// <c>current.bin</c> in the work folder (with <c>current.txt</c> saying what it is), so a crash
/// leaves its reproducer behind. A hang is reported by a watchdog thread that writes the input and
/// ends the process (see <see cref="Run"/>).
/// </remarks>
public sealed class DecodeFuzzer(IImageDecoder decoder, ILocalFeatureExtractor? features, DecodeLimits limits, TimeSpan slowCall)
{
    /// <summary>Mutated files keep their size within this (bigger inputs only slow the run).</summary>
    private const int MaxInput = 1 << 20;

    private static readonly byte[] InterestingBytes = [0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF];
    private static readonly uint[] InterestingWords = [0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF];

    /// <summary>
    /// Seeds: the photo reduced to a small size and encoded in every accepted format (and the common
    /// variants: progressive-free baseline JPEG with EXIF orientation, grey, alpha, 16-bit PNG,
    /// animated GIF and WebP, multi-page TIFF), so the mutations reach every loader.
    /// </summary>
    public static IReadOnlyList<FuzzSeed> MakeSeeds(IImageDecoder decoder, byte[] photo)
    {
        ArgumentNullException.ThrowIfNull(decoder);
        var small = decoder.DecodeFit(photo, 96);
        var flipped = new RgbImage(small.Width, small.Height, [.. small.Pixels.Select(p => (byte)(255 - p))]);
        var seeds = new List<FuzzSeed> { new("photo.jpg", decoder.Thumbnail(photo, 128)) };
        foreach (var format in ImageEncoder.Formats)
        {
            try
            {
                seeds.Add(new($"small.{format}", ImageEncoder.Encode(format, small)));
            }
            catch (InvalidOperationException)
            {
                // No encoder for it on this machine (HEIF/AVIF need libheif's encoders): its
                // decoder is then fuzzed only through the other seeds' splices.
            }
        }

        seeds.Add(new("animated.gif", ImageEncoder.Encode("gif", small, flipped)));
        seeds.Add(new("animated.webp", ImageEncoder.Encode("webp", small, flipped)));
        seeds.Add(new("pages.tiff", ImageEncoder.Encode("tiff", small, flipped)));
        seeds.Add(new("exif6.jpg", WithExifOrientation(seeds[0].Bytes, 6)));
        return seeds;
    }

    /// <summary>
    /// Runs until <paramref name="iterations"/> inputs or <paramref name="duration"/> (whichever is
    /// given and comes first) or cancellation. With a <paramref name="workFolder"/>, each input is
    /// written there before it is decoded and each finding's input is kept; a watchdog then ends the
    /// process when one input's calls take over 10 x the slow-call limit (a hang), after writing it.
    /// </summary>
    public FuzzReport Run(IReadOnlyList<FuzzSeed> seeds, int seed, int? iterations, TimeSpan? duration, string? workFolder,
        Action<int, FuzzReport>? progress = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(seeds);
        ArgumentOutOfRangeException.ThrowIfZero(seeds.Count, nameof(seeds));
        if (workFolder is not null)
        {
            Directory.CreateDirectory(workFolder);
        }

        var rng = new Random(seed);
        var findings = new List<FuzzFinding>();
        var refused = Enum.GetValues<ImageErrorKind>().ToDictionary(k => k, _ => 0);
        var decoded = 0;
        var slowest = 0.0;
        var slowestCase = "";
        var started = Stopwatch.StartNew();

        // Warm up (first calls load codecs and grow allocator pools), then take the baselines.
        foreach (var s in seeds)
        {
            _ = RunCalls(s.Bytes, rng: new Random(0));
        }

        var vipsBefore = ImageEncoder.LibVipsTrackedBytes;
        var rssBefore = ResidentBytes();
        var fdBefore = OpenFileDescriptors();
        var gate = new Lock();
        var current = (Iteration: -1, Started: 0L, Label: "");
        using var watchdog = workFolder is null ? null : StartWatchdog(() =>
        {
            lock (gate)
            {
                return current;
            }
        }, workFolder, slowCall * 10);

        var i = 0;
        for (; (iterations is null || i < iterations) && (duration is null || started.Elapsed < duration) && !ct.IsCancellationRequested; i++)
        {
            var source = seeds[rng.Next(seeds.Count)];
            var input = Mutate(source.Bytes, rng, seeds, out var mutation);
            var label = $"iteration {i} (seed {seed}): {source.Name}, {mutation}";
            if (workFolder is not null)
            {
                File.WriteAllBytes(Path.Combine(workFolder, "current.bin"), input);
                File.WriteAllText(Path.Combine(workFolder, "current.txt"), label + Environment.NewLine);
            }

            lock (gate)
            {
                current = (i, Stopwatch.GetTimestamp(), label);
            }

            var outcome = RunCalls(input, new Random(rng.Next()));
            lock (gate)
            {
                current = (-1, 0L, "");
            }

            if (outcome.Problem is { } problem)
            {
                findings.Add(new FuzzFinding(i, source.Name, mutation, outcome.Call, problem, Save(workFolder, $"finding-{i}.bin", input)));
            }
            else if (outcome.Refused is { } kind)
            {
                refused[kind]++;
            }
            else
            {
                decoded++;
            }

            if (outcome.SlowestMs > slowest)
            {
                (slowest, slowestCase) = (outcome.SlowestMs, $"{label} ({outcome.SlowestCall})");
            }

            if (outcome.SlowestMs > slowCall.TotalMilliseconds)
            {
                findings.Add(new FuzzFinding(i, source.Name, mutation, outcome.SlowestCall,
                    string.Create(CultureInfo.InvariantCulture, $"took {outcome.SlowestMs:F0} ms (limit {slowCall.TotalMilliseconds:F0} ms)"), Save(workFolder, $"slow-{i}.bin", input)));
            }

            if (progress is not null && i > 0 && i % 500 == 0)
            {
                progress(i, Report(i));
            }
        }

        return Report(i, settle: true);

        FuzzReport Report(int done, bool settle = false) => new(done, decoded, new Dictionary<ImageErrorKind, int>(refused), [.. findings], slowest, slowestCase,
            settle ? SettledVipsGrowth(vipsBefore) : ImageEncoder.LibVipsTrackedBytes - vipsBefore, ResidentBytes() - rssBefore, OpenFileDescriptors() - fdBefore, started.Elapsed);
    }

    /// <summary>
    /// libvips memory held beyond <paramref name="before"/> once it has settled: encoders (thumbnails)
    /// run on libvips' own worker thread, which lets go of its buffers a moment after the call
    /// returned, so a count taken at once can show a growth that is gone a few milliseconds later.
    /// A leak never comes back down; the wait is bounded.
    /// </summary>
    private static long SettledVipsGrowth(long before)
    {
        var waited = Stopwatch.StartNew();
        long growth;
        while ((growth = ImageEncoder.LibVipsTrackedBytes - before) > 0 && waited.Elapsed < TimeSpan.FromSeconds(10))
        {
            Thread.Sleep(10);
        }

        return growth;
    }

    /// <summary>The calls of one input and how they went; stops at the first finding.</summary>
    public (string? Problem, string Call, ImageErrorKind? Refused, double SlowestMs, string SlowestCall) RunCalls(byte[] input, Random rng, Action<string>? starting = null)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(rng);
        ImageInfo? info = null;
        ImageErrorKind? refusal = null;
        var slowest = (Ms: 0.0, Call: "");
        var calls = new (string Name, Action Run)[]
        {
            ("ReadInfo", () => info = decoder.ReadInfo(input, limits)),
            ("Prepare", () => decoder.Prepare(input, 224, 224, null, limits)),
            ("Prepare with a box", () => decoder.Prepare(input, 224, 224, RandomBox(info, rng), limits)),
            ("PrepareRegions", () => decoder.PrepareRegions(input, 224, 224, [RandomBox(info, rng) ?? new(0, 0, 1, 1), RandomBox(info, rng) ?? new(0, 0, 9999, 9999)], limits)),
            ("DecodeFit", () => decoder.DecodeFit(input, 1 + rng.Next(512), limits)),
            ("PrepareAndFit", () => decoder.PrepareAndFit(input, 224, 224, 1 + rng.Next(512), rng.Next(2) == 0 ? null : RandomBox(info, rng), limits)),
            ("PrepareAndFitIfShared", () => decoder.PrepareAndFitIfShared(input, 224, 224, 384, rng.Next(2) == 0 ? null : RandomBox(info, rng), limits)),
            ("Thumbnail", () => decoder.Thumbnail(input, 16 + rng.Next(256), limits)),
            ("SIFT", () => features?.Extract(input, rng.Next(2) == 0 ? null : RandomBox(info, rng), limits)),
        };
        foreach (var (name, run) in calls)
        {
            starting?.Invoke(name);
            var t = Stopwatch.GetTimestamp();
            try
            {
                run();
            }
            catch (InvalidImageException e)
            {
                refusal ??= e.Kind;
                if (string.IsNullOrWhiteSpace(e.Message))
                {
                    return ("refused without a reason", name, refusal, slowest.Ms, slowest.Call);
                }

                if (name == "ReadInfo")
                {
                    // The header is unreadable: every other call refuses it the same way; check one.
                    var again = Catch(() => decoder.Prepare(input, 224, 224, null, limits));
                    return again is InvalidImageException ? (null, name, refusal, slowest.Ms, slowest.Call)
                        : ($"ReadInfo refused it ({e.Kind}) but Prepare {(again is null ? "decoded it" : "threw " + again.GetType().Name + ": " + again.Message)}", "Prepare", refusal, slowest.Ms, slowest.Call);
                }
            }
            catch (Exception e)
            {
                return ($"{e.GetType().Name}: {e.Message}", name, refusal, slowest.Ms, slowest.Call);
            }
            finally
            {
                var ms = Stopwatch.GetElapsedTime(t).TotalMilliseconds;
                if (ms > slowest.Ms)
                {
                    slowest = (ms, name);
                }
            }
        }

        return (null, "", refusal, slowest.Ms, slowest.Call);
    }

    /// <summary>One to four mutations of <paramref name="input"/>, half of them aimed at the first 512 bytes (the headers).</summary>
    public static byte[] Mutate(byte[] input, Random rng, IReadOnlyList<FuzzSeed> seeds, out string description)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(rng);
        ArgumentNullException.ThrowIfNull(seeds);
        var data = new List<byte>(input);
        var done = new List<string>();
        var count = 1 + rng.Next(4);
        for (var m = 0; m < count && data.Count > 0; m++)
        {
            var at = rng.Next(2) == 0 ? rng.Next(Math.Min(512, data.Count)) : rng.Next(data.Count);
            switch (rng.Next(9))
            {
                case 0:
                    var bit = rng.Next(8);
                    data[at] ^= (byte)(1 << bit);
                    done.Add($"flip bit {bit} at {at}");
                    break;
                case 1:
                    var b = InterestingBytes[rng.Next(InterestingBytes.Length)];
                    data[at] = b;
                    done.Add($"byte {b:X2} at {at}");
                    break;
                case 2:
                    var n = 1 + rng.Next(8);
                    for (var k = 0; k < n && at + k < data.Count; k++)
                    {
                        data[at + k] = (byte)rng.Next(256);
                    }

                    done.Add($"{n} random bytes at {at}");
                    break;
                case 3:
                    var word = InterestingWords[rng.Next(InterestingWords.Length)];
                    var width = rng.Next(2) == 0 ? 2 : 4;
                    var bigEndian = rng.Next(2) == 0;
                    for (var k = 0; k < width && at + k < data.Count; k++)
                    {
                        var shift = 8 * (bigEndian ? width - 1 - k : k);
                        data[at + k] = (byte)(word >> shift);
                    }

                    done.Add(string.Create(CultureInfo.InvariantCulture, $"{(bigEndian ? "BE" : "LE")}{width * 8} {word:X} at {at}"));
                    break;
                case 4:
                    data.RemoveRange(at, data.Count - at);
                    done.Add($"truncate at {at}");
                    break;
                case 5:
                    var removed = Math.Min(1 + rng.Next(256), data.Count - at);
                    data.RemoveRange(at, removed);
                    done.Add($"delete {removed} at {at}");
                    break;
                case 6:
                    var from = rng.Next(data.Count);
                    var length = Math.Min(1 + rng.Next(512), data.Count - from);
                    data.InsertRange(at, data.GetRange(from, length));
                    done.Add($"copy {length} from {from} to {at}");
                    break;
                case 7:
                    var inserted = 1 + rng.Next(64);
                    data.InsertRange(at, Enumerable.Range(0, inserted).Select(_ => (byte)rng.Next(256)));
                    done.Add($"insert {inserted} random at {at}");
                    break;
                default:
                    var other = seeds[rng.Next(seeds.Count)];
                    var tail = rng.Next(other.Bytes.Length);
                    data.RemoveRange(at, data.Count - at);
                    data.AddRange(other.Bytes.AsSpan(tail).ToArray());
                    done.Add($"splice {other.Name} from {tail} at {at}");
                    break;
            }
        }

        if (data.Count > MaxInput)
        {
            data.RemoveRange(MaxInput, data.Count - MaxInput);
        }

        description = done.Count == 0 ? "none" : string.Join(", ", done);
        return [.. data];
    }

    /// <summary>An APP1 Exif segment holding one Orientation entry, inserted after SOI.</summary>
    private static byte[] WithExifOrientation(byte[] jpeg, int orientation)
    {
        byte[] segment =
        [
            0xFF, 0xE1, 0, 34, (byte)'E', (byte)'x', (byte)'i', (byte)'f', 0, 0,
            (byte)'M', (byte)'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, (byte)orientation, 0, 0, 0, 0, 0, 0,
        ];
        return [.. jpeg[..2], .. segment, .. jpeg[2..]];
    }

    private static BoundingBox? RandomBox(ImageInfo? info, Random rng)
    {
        if (info is null || info.Width < 1 || info.Height < 1)
        {
            return null;
        }

        var x = rng.Next(info.Width);
        var y = rng.Next(info.Height);
        return new BoundingBox(x, y, 1 + rng.Next(info.Width - x), 1 + rng.Next(info.Height - y));
    }

    private static Exception? Catch(Action run)
    {
        try
        {
            run();
            return null;
        }
        catch (Exception e)
        {
            return e;
        }
    }

    private static string? Save(string? folder, string name, byte[] input)
    {
        if (folder is null)
        {
            return null;
        }

        var path = Path.Combine(folder, name);
        File.WriteAllBytes(path, input);
        return path;
    }

    /// <summary>Ends the process (exit code 3) when one input's calls run for longer than <paramref name="hang"/>, keeping the input.</summary>
    private static Timer StartWatchdog(Func<(int Iteration, long Started, string Label)> current, string folder, TimeSpan hang) =>
        new(_ =>
        {
            var (iteration, startedAt, label) = current();
            if (iteration >= 0 && Stopwatch.GetElapsedTime(startedAt) > hang)
            {
                File.Copy(Path.Combine(folder, "current.bin"), Path.Combine(folder, $"hang-{iteration}.bin"), overwrite: true);
                Console.Error.WriteLine($"fuzz: HANG: {label} has run for over {hang.TotalSeconds:F0} s; input kept as hang-{iteration}.bin in {folder}");
                Environment.Exit(3);
            }
        }, null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));

    private static long ResidentBytes()
    {
        using var process = Process.GetCurrentProcess();
        return process.WorkingSet64;
    }

    private static int OpenFileDescriptors() =>
        Directory.Exists("/proc/self/fd") ? Directory.GetFiles("/proc/self/fd").Length : 0;
}
