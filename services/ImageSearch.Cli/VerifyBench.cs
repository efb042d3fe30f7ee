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
/// ratio test, then the similarity fit), with the native matcher and with the managed reference
/// (<see cref="LocalFeatureOptions.ReferenceMatch"/>), interleaved. Each instance query is verified
/// against its original and the 99 gallery photos after it, so every set holds one true match.
/// </summary>
internal static class VerifyBench
{
    private const int Candidates = 100;

    public static Command Create(Option<string> bench)
    {
        var queries = new Option<int>("--queries") { Description = "Instance queries, each verified against 100 gallery photos.", DefaultValueFactory = _ => 20 };
        var rounds = new Option<int>("--rounds") { Description = "Rounds over the queries; the two matchers alternate which goes first.", DefaultValueFactory = _ => 5 };
        var command = new Command("verify", "Re-ranking's verification of 100 candidates on one thread: the native matcher against the managed reference, and parsing the stored features.");
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

        var native = new GeometricVerifier(Options.Create(Copy(options, referenceMatch: false)));
        var reference = new GeometricVerifier(Options.Create(Copy(options, referenceMatch: true)));
        var parseTimes = new List<double>();
        var nativeTimes = new List<double>();
        var referenceTimes = new List<double>();
        var cpu = new TimeSpan[2]; // process CPU time in the native (0) and reference (1) loops: steadier than wall time on a shared host
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
                int[] fromNative = [], fromReference = [];
                foreach (var nativeTurn in round % 2 == 0 ? new[] { true, false } : [false, true])
                {
                    var verifier = nativeTurn ? native : reference;
                    self.Refresh();
                    var cpuBefore = self.TotalProcessorTime;
                    t = Stopwatch.GetTimestamp();
                    var counts = candidates.Select(c => verifier.CountInliers(query, c)).ToArray();
                    var wallMs = Stopwatch.GetElapsedTime(t).TotalMilliseconds;
                    self.Refresh();
                    if (!warmUp)
                    {
                        (nativeTurn ? nativeTimes : referenceTimes).Add(wallMs);
                        cpu[nativeTurn ? 0 : 1] += self.TotalProcessorTime - cpuBefore;
                    }

                    if (nativeTurn)
                    {
                        fromNative = counts;
                    }
                    else
                    {
                        fromReference = counts;
                    }
                }

                if (!fromNative.SequenceEqual(fromReference))
                {
                    Console.Error.WriteLine("bench verify: the native matcher and the reference found different inlier counts.");
                    return 1;
                }

                if (warmUp)
                {
                    continue;
                }

                parseTimes.Add(parseMs);
                inliers += fromNative.Count(n => n >= minInliers);
                verified += fromNative.Length;
            }
        }

        parseTimes.Sort();
        nativeTimes.Sort();
        referenceTimes.Sort();
        double nativeP50 = EvalCommand.Percentile(nativeTimes, 0.5), referenceP50 = EvalCommand.Percentile(referenceTimes, 0.5);
        double nativeCpu = cpu[0].TotalMilliseconds / nativeTimes.Count, referenceCpu = cpu[1].TotalMilliseconds / referenceTimes.Count;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"verification of {Candidates} candidates, one thread, {queries.Count} instance queries x {rounds} rounds ({inliers} of {verified} candidates verified, the same counts with both matchers):"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  parse stored features: p50 {EvalCommand.Percentile(parseTimes, 0.5):F2} ms"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  match + similarity fit, native matcher ({(GeometricVerifier.NativeMatchSupported ? "AVX-512 VNNI" : "not on this CPU: the managed loop")}): p50 {nativeP50:F2} ms, p90 {EvalCommand.Percentile(nativeTimes, 0.9):F2} ms; CPU {nativeCpu:F2} ms (mean)"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  match + similarity fit, managed reference (LocalFeatures:ReferenceMatch): p50 {referenceP50:F2} ms, p90 {EvalCommand.Percentile(referenceTimes, 0.9):F2} ms; CPU {referenceCpu:F2} ms (mean)"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  reference / native: {referenceP50 / nativeP50:F1}x (wall p50), {referenceCpu / nativeCpu:F1}x (CPU)"));
        return 0;
    }

    private static LocalFeatureOptions Copy(LocalFeatureOptions o, bool referenceMatch)
    {
        var copy = o.Copy();
        copy.ReferenceMatch = referenceMatch;
        return copy;
    }
}
