using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using ImageSearch.Cli.Evaluation;
using ImageSearch.Core;
using ImageSearch.Embedding;
using ImageSearch.Pipeline;
using Microsoft.Extensions.Options;

namespace ImageSearch.Cli;

/// <summary>
/// <c>bench</c>: the embedded pipeline's speed on this machine for one model: raw model throughput
/// (pre-made tensors, best batch size), decode+preprocess throughput, end-to-end indexing of a
/// gallery and its ratio to the raw model, single-query search latency, and peak memory.
/// </summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var bench = new Option<string>("--bench") { Description = "Benchmark folder (gallery/ and instance.tsv).", DefaultValueFactory = _ => "bench-dev" };
        var queries = new Option<int>("--queries") { Description = "Instance queries timed for search latency.", DefaultValueFactory = _ => 200 };
        var seconds = new Option<double>("--seconds") { Description = "Time spent on each model configuration and on decoding.", DefaultValueFactory = _ => 2 };
        var command = new Command("bench", "Measure model, decode, indexing and search speed.");
        command.Subcommands.Add(CreateCluster(bench));
        command.Subcommands.Add(CreateGateway(bench));
        command.Subcommands.Add(CreateContention(bench));
        command.Subcommands.Add(Peers.PeersBench.Create(bench));
        command.Subcommands.Add(VerifyBench.Create(bench));
        command.Subcommands.Add(Reliability.FuzzCommand.Create());
        command.Subcommands.Add(Reliability.LoadCommand.Create());
        command.Options.Add(bench);
        command.Options.Add(queries);
        command.Options.Add(seconds);
        CliHost.AddCommon(command);
        command.SetAction(async (parse, ct) =>
        {
            var root = parse.GetValue(bench)!;
            var gallery = Path.Combine(root, "gallery");
            if (!Directory.Exists(gallery))
            {
                await Console.Error.WriteLineAsync($"bench: '{gallery}' does not exist; build the benchmark with shared/bench/build.py.").ConfigureAwait(false);
                return 2;
            }

            var files = Directory.GetFiles(gallery).Order(StringComparer.Ordinal).ToArray();
            var db = Path.Combine(Path.GetTempPath(), "imagesearch-bench-" + Environment.ProcessId);
            try
            {
                using var host = CliHost.Build(parse, gallery, db, PipelineRoles.Query);
                var embedder = host.Service<IEmbedder>();
                var decoder = host.Service<IImageDecoder>();
                var model = embedder.Model;
                Console.WriteLine($"model {model.Key} ({model.Dimensions}-d, {model.InputWidth}x{model.InputHeight}) on {embedder.Device}; {Environment.ProcessorCount} cores; gallery {files.Length} images");

                var (bestBatch, modelRate) = MeasureModel(embedder, host.Service<IOptions<EmbeddingOptions>>().Value, parse.GetValue(seconds), ct);
                var decodeRate = MeasureDecode(decoder, files, model, parse.GetValue(seconds), ct);
                var pairRate = MeasureDecodeAndEmbed(decoder, embedder, files, model, parse.GetValue(seconds), ct);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"decode+embed without bus or index ({Environment.ProcessorCount} threads, each decoding 16 photos then embedding them): {pairRate:F1} images/s; ratio to raw model {pairRate / modelRate:F2} (the ceiling for end-to-end on these cores)"));
                var siftRate = host.Services.GetService(typeof(ILocalFeatureExtractor)) is ILocalFeatureExtractor extractor
                    ? MeasureLocalFeatures(extractor, files, parse.GetValue(seconds), ct)
                    : 0;
                if (siftRate > 0)
                {
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"local features (decode + SIFT, {Environment.ProcessorCount} threads): {siftRate:F1} images/s; model and SIFT together at most {Combined(modelRate, siftRate):F1} images/s"));
                }

                host.Dispose();

                // CNN only (Rerank:Enabled=false): the pipeline against the raw model, issue 2's measure.
                var (cnnRate, cnnMin, cnnMax) = await MedianIndexRateAsync(parse, gallery, db, s => s["Rerank:Enabled"] = "false", ct).ConfigureAwait(false);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"end-to-end indexing of {files.Length} images without local features, 3 fresh indexes: median {cnnRate:F1} images/s (min {cnnMin:F1}, max {cnnMax:F1}); ratio to raw model {cnnRate / modelRate:F2}"));

                // The default (local features on, if configured so): the index searched below.
                var (indexRate, min, max) = await MedianIndexRateAsync(parse, gallery, db, null, ct).ConfigureAwait(false);
                var ceiling = siftRate > 0 ? Combined(modelRate, siftRate) : modelRate;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"end-to-end indexing of {files.Length} images as configured{(siftRate > 0 ? " (CNN + local features)" : "")}, 3 fresh indexes: median {indexRate:F1} images/s (min {min:F1}, max {max:F1}); ratio to {(siftRate > 0 ? "model + SIFT" : "raw model")} {indexRate / ceiling:F2}"));

                var (p50, p99, knn50) = await MeasureSearchAsync(parse, root, gallery, db, parse.GetValue(queries), ct).ConfigureAwait(false);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"search (top 10, one query at a time, read+decode+embed+k-NN, re-ranking as configured): p50 {p50:F1} ms, p99 {p99:F1} ms; k-NN (and re-ranking) after the embedding p50 {knn50:F2} ms"));
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"peak memory (working set): {Process.GetCurrentProcess().PeakWorkingSet64 / (1024.0 * 1024):F0} MiB"));
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {model.Name} | {modelRate:F1} ({bestBatch}) | {decodeRate:F1} | {pairRate:F1} ({pairRate / modelRate:F2}) | {cnnRate:F1} | {cnnRate / modelRate:F2} | {siftRate:F1} | {indexRate:F1} ({indexRate / ceiling:F2}) | {p50:F1} / {p99:F1} | {knn50:F2} ms | {Process.GetCurrentProcess().PeakWorkingSet64 / (1024 * 1024)} MiB |"));
                return 0;
            }
            finally
            {
                if (Directory.Exists(db))
                {
                    Directory.Delete(db, recursive: true);
                }
            }
        });
        return command;
    }

    /// <summary>Images/s when each image costs one model run and one SIFT extraction, on the same cores.</summary>
    private static double Combined(double modelRate, double siftRate) => 1 / ((1 / modelRate) + (1 / siftRate));

    /// <summary>Three fresh indexes of the gallery; the median rate with the range (one run of a few seconds swings with the host).</summary>
    private static async Task<(double Median, double Min, double Max)> MedianIndexRateAsync(
        ParseResult parse, string gallery, string db, Action<IDictionary<string, string?>>? configure, CancellationToken ct)
    {
        var rates = new List<double>();
        for (var round = 0; round < 3; round++)
        {
            if (Directory.Exists(db))
            {
                Directory.Delete(db, recursive: true);
            }

            var summary = await IndexCommand.RunAsync(parse, gallery, db, progress: false, ct, configure).ConfigureAwait(false);
            rates.Add(summary.Indexed / summary.Seconds);
        }

        rates.Sort();
        return (rates[1], rates[0], rates[2]);
    }

    /// <summary>Decode + SIFT of every gallery photo (bytes in memory), one thread per core, for <paramref name="seconds"/>.</summary>
    private static double MeasureLocalFeatures(ILocalFeatureExtractor extractor, string[] files, double seconds, CancellationToken ct)
    {
        var bytes = files.Select(File.ReadAllBytes).ToArray();
        _ = extractor.Extract(bytes[0]);
        var done = 0;
        var clock = Stopwatch.StartNew();
        Parallel.For(0, Environment.ProcessorCount, new ParallelOptions { CancellationToken = ct }, t =>
        {
            for (var i = t; clock.Elapsed.TotalSeconds < seconds; i += Environment.ProcessorCount)
            {
                extractor.Extract(bytes[i % bytes.Length]);
                Interlocked.Increment(ref done);
            }
        });
        return done / clock.Elapsed.TotalSeconds;
    }

    private static Command CreateCluster(Option<string> bench)
    {
        var workers = new Option<string>("--workers") { Description = "Worker counts to measure, comma-separated.", DefaultValueFactory = _ => "1,2,4" };
        var clients = new Option<int>("--clients") { Description = "Concurrent search clients.", DefaultValueFactory = _ => 4 };
        var searches = new Option<int>("--searches") { Description = "Searches in the load run.", DefaultValueFactory = _ => 400 };
        var rounds = new Option<int>("--rounds") { Description = "Rounds of the embedded server then each cluster; the ratios' median over them is reported.", DefaultValueFactory = _ => 3 };
        var command = new Command("cluster", "Ingestion through RabbitMQ with 1, 2, 4 workers vs embedded; gateway search latency under load.");
        command.Options.Add(bench);
        command.Options.Add(workers);
        command.Options.Add(clients);
        command.Options.Add(searches);
        command.Options.Add(rounds);
        command.SetAction((parse, ct) =>
        {
            var gallery = Path.Combine(parse.GetValue(bench)!, "gallery");
            var counts = parse.GetValue(workers)!.Split(',').Select(w => int.Parse(w, CultureInfo.InvariantCulture)).ToArray();
            if (parse.GetValue(rounds) < 1 || counts.Any(n => n < 1))
            {
                Console.Error.WriteLine("--rounds and every --workers count must be at least 1.");
                return Task.FromResult(2);
            }

            return ClusterBench.RunAsync(gallery, counts, parse.GetValue(rounds), parse.GetValue(clients), parse.GetValue(searches), ct);
        });
        return command;
    }

    private static Command CreateContention(Option<string> bench)
    {
        var photos = new Option<int>("--photos") { Description = "New photos to ingest (from two thirds of the benchmark's query images; at most that many): half with no searches, half while one client searches.", DefaultValueFactory = _ => 600 };
        var command = new Command("contention", "Search latency through the real gateway while it ingests new photos, and what the searches cost ingestion: default priorities vs one priority for all.");
        command.Options.Add(bench);
        command.Options.Add(photos);
        command.SetAction(async (parse, ct) =>
        {
            var root = Path.GetFullPath(parse.GetValue(bench)!);
            var count = Math.Max(2, parse.GetValue(photos));
            var figures = await Peers.ContentionBench.RunAsync(root, count, ct).ConfigureAwait(false);
            foreach (var line in Peers.ContentionBench.Describe(figures))
            {
                Console.WriteLine(line);
            }

            return 0;
        });
        return command;
    }

    private static Command CreateGateway(Option<string> bench)
    {
        var clients = new Option<int>("--clients") { Description = "Concurrent search clients of the loaded runs.", DefaultValueFactory = _ => 4 };
        var searches = new Option<int>("--searches") { Description = "Searches per loaded run (a quarter of them, at least 20, at one client).", DefaultValueFactory = _ => 400 };
        var command = new Command("gateway", "Search latency through the real gateway process on the benchmark gallery: 1 and N concurrent clients, re-ranking off and on.");
        command.Options.Add(bench);
        command.Options.Add(clients);
        command.Options.Add(searches);
        command.SetAction(async (parse, ct) =>
        {
            var root = Path.GetFullPath(parse.GetValue(bench)!);
            var (figures, points, rss) = await Peers.GatewayBench.RunAsync(null, "", root, parse.GetValue(searches), parse.GetValue(clients), ct).ConfigureAwait(false);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"gateway on {points} indexed images (the gallery, indexed at start), working set {rss / (1024 * 1024):F0} MiB"));
            foreach (var f in figures)
            {
                Console.WriteLine(Peers.GatewayBench.Describe(f));
            }

            return 0;
        });
        return command;
    }

    /// <summary>
    /// The model's best throughput on pre-made tensors, whichever way it is run: as ingestion runs
    /// it (one run per core at once, one thread each) or one run at a time over every core, at run
    /// sizes 1 to 32. The best of all is the "raw model" figure the end-to-end rate is compared with.
    /// </summary>
    internal static (string Best, double Rate) MeasureModel(IEmbedder embedder, EmbeddingOptions options, double seconds, CancellationToken ct)
    {
        var m = embedder.Model;
        var rng = new Random(7);
        var image = new byte[m.InputWidth * m.InputHeight * 3];
        rng.NextBytes(image);
        var best = (Best: "", Rate: 0.0);
        var cores = Environment.ProcessorCount;
        OnnxEmbedder Create(int batchThreads) => new(new EmbeddingOptions
        {
            ModelsDirectory = options.ModelsDirectory,
            Model = options.Model,
            Device = options.Device,
            CudaDeviceId = options.CudaDeviceId,
            IntraOpThreads = batchThreads,
            BatchIntraOpThreads = batchThreads,
            BatchSize = 1024,
            OnnxRuntimeNativeDirectory = options.OnnxRuntimeNativeDirectory,
        });
        using var oneThread = Create(1);
        using var allCores = Create(0);
        foreach (var run in new[] { 1, 2, 4, 8, 16, 32 })
        {
            var images = Enumerable.Range(0, run).Select(_ => new RgbImage(m.InputWidth, m.InputHeight, image)).ToArray();
            foreach (var (label, model, callers) in new[] { ($"{cores} runs at once, 1 thread each", oneThread, cores), ($"one run at a time on {cores} threads", allCores, 1) })
            {
                ct.ThrowIfCancellationRequested();
                model.Embed(images); // warm-up: first runs allocate and pick kernels
                var done = 0L;
                var t = Stopwatch.GetTimestamp();
                Parallel.For(0, callers, new ParallelOptions { MaxDegreeOfParallelism = callers }, _ =>
                {
                    while (Stopwatch.GetElapsedTime(t).TotalSeconds < seconds)
                    {
                        model.Embed(images);
                        Interlocked.Add(ref done, run);
                    }
                });
                var rate = done / Stopwatch.GetElapsedTime(t).TotalSeconds;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"raw model, run of {run,2}, {label}: {rate:F1} images/s"));
                if (rate > best.Rate)
                {
                    best = ($"run of {run}, {label}", rate);
                }
            }
        }

        return best;
    }

    private static double MeasureDecode(IImageDecoder decoder, string[] files, EmbeddingModelInfo m, double seconds, CancellationToken ct)
    {
        var bytes = files.Select(File.ReadAllBytes).ToArray();
        Parallel.For(0, bytes.Length, new ParallelOptions { CancellationToken = ct }, i => decoder.Prepare(bytes[i], m.InputWidth, m.InputHeight)); // warm-up
        var done = 0L;
        var t = Stopwatch.GetTimestamp();
        do
        {
            Parallel.For(0, bytes.Length, new ParallelOptions { CancellationToken = ct }, i => decoder.Prepare(bytes[i], m.InputWidth, m.InputHeight));
            done += bytes.Length;
        }
        while (Stopwatch.GetElapsedTime(t).TotalSeconds < seconds);
        var rate = done / Stopwatch.GetElapsedTime(t).TotalSeconds;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"decode+preprocess to {m.InputWidth}x{m.InputHeight}: {rate:F1} images/s on {Environment.ProcessorCount} threads ({rate / Environment.ProcessorCount:F1} per thread)"));
        return rate;
    }

    /// <summary>What decoding and the model reach together on these cores with nothing else running.</summary>
    private static double MeasureDecodeAndEmbed(IImageDecoder decoder, IEmbedder embedder, string[] files, EmbeddingModelInfo m, double seconds, CancellationToken ct)
    {
        var bytes = files.Select(File.ReadAllBytes).ToArray();
        var next = 0L;
        var done = 0L;
        var t = Stopwatch.GetTimestamp();
        Parallel.For(0, Environment.ProcessorCount, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount, CancellationToken = ct }, _ =>
        {
            while (Stopwatch.GetElapsedTime(t).TotalSeconds < seconds)
            {
                var start = Interlocked.Add(ref next, 16) - 16;
                var batch = Enumerable.Range(0, 16).Select(k => decoder.Prepare(bytes[(start + k) % bytes.Length], m.InputWidth, m.InputHeight).Pixels).ToArray();
                embedder.Embed(batch);
                Interlocked.Add(ref done, batch.Length);
            }
        });
        return done / Stopwatch.GetElapsedTime(t).TotalSeconds;
    }

    private static async Task<(double P50, double P99, double KnnP50)> MeasureSearchAsync(ParseResult parse, string root, string gallery, string db, int count, CancellationToken ct)
    {
        var set = BenchmarkSet.Load(root);
        using var host = CliHost.Build(parse, gallery, db, PipelineRoles.Query);
        await host.StartAsync(ct).ConfigureAwait(false);
        try
        {
            var search = host.Service<SearchService>();
            var total = new List<double>();
            var knn = new List<double>();
            foreach (var q in set.Instance.Take(count))
            {
                var (result, milliseconds) = await EvalCommand.RunTimedAsync(search, root, q, 10, ct).ConfigureAwait(false);
                total.Add(milliseconds);
                knn.Add(result.SearchMilliseconds);
            }

            total.Sort();
            knn.Sort();
            return (EvalCommand.Percentile(total, 0.5), EvalCommand.Percentile(total, 0.99), EvalCommand.Percentile(knn, 0.5));
        }
        finally
        {
            await host.StopAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }
}
