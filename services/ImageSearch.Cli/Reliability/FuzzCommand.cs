using System.CommandLine;
using System.Globalization;
using ImageSearch.Core;
using ImageSearch.Imaging;
using ImageSearch.LocalFeatures;

namespace ImageSearch.Cli.Reliability;

/// <summary>
/// <c>bench fuzz</c>: the seeded mutation fuzzer of the decode path (<see cref="DecodeFuzzer"/>) for a
/// fixed time, printing what it decoded, refused and found; exit code 1 when it found anything.
/// <c>--replay FILE</c> runs the calls on one saved input instead.
/// </summary>
internal static class FuzzCommand
{
    public static Command Create()
    {
        var seconds = new Option<double>("--seconds") { Description = "How long to fuzz.", DefaultValueFactory = _ => 180 };
        var seed = new Option<int>("--seed") { Description = "Random seed: the same seed gives the same inputs.", DefaultValueFactory = _ => 1 };
        var photo = new Option<string?>("--photo") { Description = "JPEG photo the seed files are made from (default: the first test photo or benchmark image)." };
        var output = new Option<string>("--out") { Description = "Folder for the current input and for every finding's input.", DefaultValueFactory = _ => Path.Combine(CliHost.RepoRoot, ".cache", "fuzz") };
        var replay = new Option<string?>("--replay") { Description = "Decode one saved input (e.g. .cache/fuzz/finding-12.bin) with every call and print what each did." };
        var slow = new Option<double>("--slow-ms") { Description = "A call slower than this is a finding (a hang ends the run at 10x).", DefaultValueFactory = _ => 5000 };
        var command = new Command("fuzz", "Fuzz the decode path (libvips loaders, resizing, SIFT) with seeded mutations of well-formed files.");
        foreach (var option in new Option[] { seconds, seed, photo, output, replay, slow })
        {
            command.Options.Add(option);
        }

        command.SetAction((parse, ct) =>
        {
            var decoder = new VipsImageDecoder();
            var sift = new SiftExtractor(decoder, Microsoft.Extensions.Options.Options.Create(new LocalFeatureOptions()));
            var fuzzer = new DecodeFuzzer(decoder, sift, DecodeLimits.Default, TimeSpan.FromMilliseconds(parse.GetValue(slow)));
            if (parse.GetValue(replay) is { } file)
            {
                var (problem, call, refused, ms, slowestCall) = fuzzer.RunCalls(File.ReadAllBytes(file), new Random(0), call => Console.Error.WriteLine($"replay: {call}..."));
                Console.WriteLine(problem is not null ? $"FINDING in {call}: {problem}"
                    : string.Create(CultureInfo.InvariantCulture, $"{(refused is { } k ? "refused (" + k + ")" : "decoded")}; slowest call {slowestCall} {ms:F0} ms"));
                return Task.FromResult(problem is null ? 0 : 1);
            }

            var photoPath = parse.GetValue(photo) ?? DefaultPhoto();
            if (photoPath is null)
            {
                Console.Error.WriteLine("fuzz: no photo to make seeds from; pass --photo FILE.jpg (or run ./imagesearch test once to fetch the test photos).");
                return Task.FromResult(2);
            }

            var seeds = DecodeFuzzer.MakeSeeds(decoder, File.ReadAllBytes(photoPath));
            var folder = parse.GetValue(output)!;
            Console.WriteLine($"fuzz: {seeds.Count} seeds from {Path.GetFileName(photoPath)} ({string.Join(", ", seeds.Select(s => s.Name))}); seed {parse.GetValue(seed)}; " +
                $"{parse.GetValue(seconds)} s; inputs in {folder}");
            var report = fuzzer.Run(seeds, parse.GetValue(seed), null, TimeSpan.FromSeconds(parse.GetValue(seconds)), folder,
                (i, r) => Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  {i} inputs, {r.Decoded} decoded, {r.Refused.Values.Sum()} refused, {r.Findings.Count} findings, {i / r.Elapsed.TotalSeconds:F0}/s; " +
                    $"since the start libvips {r.VipsBytesGrowth:+0;-0;0} bytes, resident {r.ResidentGrowth / (1024.0 * 1024):+0.0;-0.0} MiB, files {r.FileDescriptorGrowth:+0;-0;0}")), ct);
            Print(report);
            return Task.FromResult(report.Findings.Count == 0 ? 0 : 1);
        });
        return command;
    }

    internal static void Print(FuzzReport r)
    {
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"fuzz: {r.Iterations} inputs in {r.Elapsed.TotalSeconds:F0} s ({r.Iterations / Math.Max(0.001, r.Elapsed.TotalSeconds):F0}/s): {r.Decoded} decoded, " +
            $"refused {string.Join(", ", r.Refused.Where(p => p.Value > 0).Select(p => $"{p.Value} {p.Key}"))}"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"fuzz: slowest call {r.SlowestCallMs:F0} ms ({r.SlowestCase}); after the run libvips holds {r.VipsBytesGrowth} bytes more than before, " +
            $"resident memory {r.ResidentGrowth / (1024.0 * 1024):+0.0;-0.0} MiB, open files {r.FileDescriptorGrowth:+0;-0;0}"));
        foreach (var f in r.Findings)
        {
            Console.WriteLine($"FINDING iteration {f.Iteration} ({f.Seed}: {f.Mutation}) in {f.Call}: {f.Problem}{(f.SavedAs is null ? "" : " -> " + f.SavedAs)}");
        }

        Console.WriteLine(r.Findings.Count == 0 ? "fuzz: no findings" : $"fuzz: {r.Findings.Count} findings");
    }

    private static string? DefaultPhoto()
    {
        foreach (var folder in new[] { Path.Combine(CliHost.RepoRoot, "test-data", "photos"), Path.Combine(CliHost.RepoRoot, "bench-dev", "gallery") })
        {
            if (Directory.Exists(folder) && Directory.GetFiles(folder, "*.jpg").Order(StringComparer.Ordinal).FirstOrDefault() is { } first)
            {
                return first;
            }
        }

        return null;
    }
}
