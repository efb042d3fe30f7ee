using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using ImageSearch.Cli.Evaluation;
using ImageSearch.Core;
using ImageSearch.LocalFeatures;
using ImageSearch.Pipeline;
using Microsoft.Extensions.Options;

namespace ImageSearch.Cli;

/// <summary>
/// <c>bench verify</c>: what re-ranking costs per query after the features are read, on one
/// thread: parsing 100 candidates' stored features and verifying them (descriptor matching with the
/// ratio test, then the similarity fit) in one call, as a query's slice is, with the default native
/// matcher, the AVX-512 VNNI kernel where AMX is the default (<see cref="LocalFeatureOptions.Amx"/>),
/// and the managed reference (<see cref="LocalFeatureOptions.ReferenceMatch"/>), interleaved. Each instance query is verified
/// against its original and the 99 gallery photos after it, so every set holds one true match.
/// </summary>
internal static class VerifyBench
{
    private const int Candidates = 100;

    public static Command Create(Option<string> bench)
    {
        var queries = new Option<int>("--queries") { Description = "Instance queries, each verified against 100 gallery photos.", DefaultValueFactory = _ => 20 };
        var rounds = new Option<int>("--rounds") { Description = "Rounds over the queries; each round another matcher goes first.", DefaultValueFactory = _ => 5 };
        var command = new Command("verify", "Re-ranking's verification of 100 candidates on one thread: the native matchers against the managed reference, and parsing the stored features.");
        command.Options.Add(bench);
        command.Options.Add(queries);
        command.Options.Add(rounds);
        CliHost.AddCommon(command);
        command.SetAction((parse, ct) => Task.FromResult(Run(parse, bench, queries, rounds, ct)));
        return command;
    }

    private static int Run(ParseResult parse, Option<string> bench, Option<int> queries, Option<int> rounds, CancellationToken ct)
    {
        var root = parse.GetValue(bench)!;
        if (!File.Exists(Path.Combine(root, "labels.tsv")))
        {
            Console.Error.WriteLine($"bench verify: '{root}' is not a benchmark folder (no labels.tsv); build one with shared/bench/build.py.");
            return 2;
        }

        var db = Path.Combine(Path.GetTempPath(), "imagesearch-verify-" + Environment.ProcessId);
        try
        {
            using var host = CliHost.Build(parse, Path.Combine(root, "gallery"), db, PipelineRoles.Query);
            if (host.Services.GetService(typeof(ILocalFeatureExtractor)) is not ILocalFeatureExtractor extractor)
            {
                Console.Error.WriteLine("bench verify: local features are off (Rerank:Enabled=false).");
                return 2;
            }

            return Run(BenchmarkSet.Load(root), extractor, host.Service<IOptions<LocalFeatureOptions>>().Value, host.Service<IOptions<RerankOptions>>().Value.MinInliers,
                parse.GetValue(queries), parse.GetValue(rounds), ct);
        }
        finally
        {
            if (Directory.Exists(db))
            {
                Directory.Delete(db, recursive: true);
            }
        }
    }

    private static int Run(BenchmarkSet set, ILocalFeatureExtractor extractor, LocalFeatureOptions options, int minInliers, int queryCount, int rounds, CancellationToken ct)
    {
        var gallery = set.Gallery.ToList();
        var blobs = new byte[gallery.Count][];
        Parallel.For(0, gallery.Count, new ParallelOptions { CancellationToken = ct }, i =>
            blobs[i] = extractor.Extract(File.ReadAllBytes(Path.Combine(set.Root, "gallery", gallery[i]))).ToBytes());
        var queries = set.Instance.Where(q => q.Relevant.Count > 0).Take(queryCount).Select(q =>
        {
            var box = string.IsNullOrEmpty(q.Box) ? (BoundingBox?)null : BoundingBox.Parse(q.Box);
            var first = gallery.IndexOf(q.Relevant.First());
            return (Features: extractor.Extract(File.ReadAllBytes(Path.Combine(set.Root, q.QueryPath)), box),
                Candidates: Enumerable.Range(0, Candidates).Select(k => blobs[(first + k) % blobs.Length]).ToArray());
        }).ToList();

        // The default matcher (AMX-INT8 where the CPU and kernel offer it), the AVX-512 VNNI kernel
        // when AMX is the default, and the managed reference.
        var matchers = new List<(string Name, GeometricVerifier Verifier)>();
        var first = new GeometricVerifier(Options.Create(Copy(options, referenceMatch: false, amx: true)));
        matchers.Add(($"native, {first.KernelName} (default)", first));
        if (GeometricVerifier.AmxMatchSupported)
        {
            var vnni = new GeometricVerifier(Options.Create(Copy(options, referenceMatch: false, amx: false)));
            matchers.Add(($"native, {vnni.KernelName} (LocalFeatures:Amx=false)", vnni));
        }

        var reference = new GeometricVerifier(Options.Create(Copy(options, referenceMatch: true, amx: false)));
        matchers.Add(($"managed reference (LocalFeatures:ReferenceMatch), {reference.KernelName}", reference));

        var parseTimes = new List<double>();
        var times = matchers.Select(_ => new List<double>()).ToArray();
        var cpu = new TimeSpan[matchers.Count]; // process CPU time in each matcher's calls: steadier than wall time on a shared host
        using var self = Process.GetCurrentProcess();
        long inliers = 0, verified = 0;
        for (var round = -1; round < rounds; round++)
        {
            var warmUp = round < 0; // the first pass JITs and fills the caches, and is not counted
            foreach (var (query, candidateBlobs) in queries)
            {
                ct.ThrowIfCancellationRequested();
                var t = Stopwatch.GetTimestamp();
                var candidates = candidateBlobs.Select(b => LocalFeatureSet.FromBytes(b)).ToArray();
                var parseMs = Stopwatch.GetElapsedTime(t).TotalMilliseconds;
                var counts = new int[matchers.Count][];

                // Each round starts with another matcher, so none always runs first.
                for (var turn = 0; turn < matchers.Count; turn++)
                {
                    var m = (turn + Math.Max(round, 0)) % matchers.Count;
                    self.Refresh();
                    var cpuBefore = self.TotalProcessorTime;
                    t = Stopwatch.GetTimestamp();
                    counts[m] = matchers[m].Verifier.CountInliers(query, candidates);
                    var wallMs = Stopwatch.GetElapsedTime(t).TotalMilliseconds;
                    self.Refresh();
                    if (!warmUp)
                    {
                        times[m].Add(wallMs);
                        cpu[m] += self.TotalProcessorTime - cpuBefore;
                    }
                }

                if (counts.Any(c => !c.SequenceEqual(counts[^1])))
                {
                    Console.Error.WriteLine("bench verify: the matchers found different inlier counts.");
                    return 1;
                }

                if (warmUp)
                {
                    continue;
                }

                parseTimes.Add(parseMs);
                inliers += counts[0].Count(n => n >= minInliers);
                verified += counts[0].Length;
            }
        }

        parseTimes.Sort();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"verification of {Candidates} candidates in one call, one thread, {queries.Count} instance queries x {rounds} rounds ({inliers} of {verified} candidates verified, the same counts with every matcher):"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  parse stored features: p50 {EvalCommand.Percentile(parseTimes, 0.5):F2} ms"));
        var p50 = new double[matchers.Count];
        var cpuMs = new double[matchers.Count];
        for (var m = 0; m < matchers.Count; m++)
        {
            times[m].Sort();
            p50[m] = EvalCommand.Percentile(times[m], 0.5);
            cpuMs[m] = cpu[m].TotalMilliseconds / times[m].Count;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  match + similarity fit, {matchers[m].Name}: p50 {p50[m]:F2} ms, p90 {EvalCommand.Percentile(times[m], 0.9):F2} ms; CPU {cpuMs[m]:F2} ms (mean)"));
        }

        for (var m = 1; m < matchers.Count; m++)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {matchers[m].Name} / default: {p50[m] / p50[0]:F1}x (wall p50), {cpuMs[m] / cpuMs[0]:F1}x (CPU)"));
        }

        return 0;
    }

    private static LocalFeatureOptions Copy(LocalFeatureOptions o, bool referenceMatch, bool amx)
    {
        var copy = o.Copy();
        copy.ReferenceMatch = referenceMatch;
        copy.Amx = amx;
        return copy;
    }
}
