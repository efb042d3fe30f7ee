using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using ImageSearch.Cli.Evaluation;
using ImageSearch.Core;
using ImageSearch.Embedding;
using ImageSearch.Pipeline;
using ImageSearch.VectorStore;
using Microsoft.Extensions.Options;

namespace ImageSearch.Cli.Peers;

/// <summary>
/// <c>bench peers</c>: ImageSearch next to what a user would otherwise pick, in one run on this
/// machine, with the same images, model, vectors and thread count, printed as one table of
/// figures and ratios (issue 6). Sections: the embedding pipeline (against Python + OpenCV DNN +
/// numpy), vector search on real embeddings (against FAISS and hnswlib from Debian), the embedded
/// store's own cost per point, search latency through the gateway on a large index, and a 1M-vector
/// run. The peers' scripts live in bench/peers/.
/// </summary>
internal static class PeersBench
{
    private static readonly int[] FullEfs = [10, 16, 24, 32, 48, 64, 96, 128, 256];
    private static readonly int[] QuickEfs = [10, 16, 32, 64, 128];

    // The large run builds with a smaller beam, the same for every library, so that the full run
    // stays within the hour on two cores (efConstruction 200 at 1M: ~20 min per library here).
    private const int MillionEfConstruction = 100;

    /// <summary>
    /// The model of the embedding-pipeline comparison: the default backbone with average pooling.
    /// OpenCV 4.6's DNN module (Debian's python3-opencv) cannot import the default R-MAC graph (it
    /// has no LpNormalization layer), and the comparison needs the same model in both runtimes.
    /// <c>setup --peers</c> exports and calibrates it.
    /// </summary>
    private const string PipelineModel = "mobilenet-v2-1.4";

    public static Command Create(Option<string> bench)
    {
        var quick = new Option<bool>("--quick") { Description = "Reduced run (a few minutes): 10k vectors, fewer repetitions, no 1M run." };
        var vectors = new Option<int?>("--vectors") { Description = "Real vectors (augmented views) in the vector-search and gateway runs (default 100000, quick 10000)." };
        var queryCount = new Option<int?>("--vector-queries") { Description = "Queries of the vector-search runs (default 1000, quick 200)." };
        var million = new Option<int?>("--million") { Description = "Vectors of the large run (0 skips it; default 1000000, quick 0)." };
        var faissMillion = new Option<bool>("--faiss-hnsw-million") { Description = "Also build FAISS HNSW at the large size (Debian's scalar build: hours at 1M)." };
        var threads = new Option<int>("--threads") { Description = "Threads for every contender (default: all cores).", DefaultValueFactory = _ => Environment.ProcessorCount };
        var sections = new Option<string>("--sections") { Description = "Comma-separated subset of embedding,vectors,store,gateway,million (views: only embed and cache the vectors).", DefaultValueFactory = _ => "embedding,vectors,store,gateway,million" };
        var command = new Command("peers", "ImageSearch against its peers (Python+OpenCV, FAISS, hnswlib) on the same data, one table with ratios.");
        foreach (var o in new Option[] { bench, quick, vectors, queryCount, million, faissMillion, threads, sections })
        {
            command.Options.Add(o);
        }

        command.SetAction(async (parse, ct) =>
        {
            var isQuick = parse.GetValue(quick);
            var settings = new Settings(
                BenchRoot: Path.GetFullPath(parse.GetValue(bench)!),
                Quick: isQuick,
                Vectors: parse.GetValue(vectors) ?? (isQuick ? 10_000 : 100_000),
                Queries: parse.GetValue(queryCount) ?? (isQuick ? 200 : 1000),
                Million: parse.GetValue(million) ?? (isQuick ? 0 : 1_000_000),
                FaissMillion: parse.GetValue(faissMillion),
                Threads: parse.GetValue(threads),
                Sections: parse.GetValue(sections)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet(StringComparer.Ordinal),
                Efs: isQuick ? QuickEfs : FullEfs,
                MinSeconds: isQuick ? 0.3 : 1.0);
            if (!Directory.Exists(Path.Combine(settings.BenchRoot, "gallery")))
            {
                await Console.Error.WriteLineAsync($"bench peers: '{settings.BenchRoot}/gallery' does not exist; build the benchmark with shared/bench/build.py.").ConfigureAwait(false);
                return 2;
            }

            return await RunAsync(parse, settings, ct).ConfigureAwait(false);
        });
        return command;
    }

    private sealed record Settings(string BenchRoot, bool Quick, int Vectors, int Queries, int Million, bool FaissMillion, int Threads, HashSet<string> Sections,
        int[] Efs, double MinSeconds);

    private static async Task<int> RunAsync(ParseResult parse, Settings s, CancellationToken ct)
    {
        var started = Stopwatch.StartNew();
        var gallery = Path.Combine(s.BenchRoot, "gallery");
        var photos = Directory.GetFiles(gallery).Order(StringComparer.Ordinal).ToArray();
        var cache = Path.Combine(CliHost.RepoRoot, ".cache", "peers");
        var table = new Table();
        var notes = new List<string>();
        var db = Path.Combine(Path.GetTempPath(), "imagesearch-peers-" + Environment.ProcessId);
        try
        {
            using var host = CliHost.Build(parse, gallery, Path.Combine(db, "views"), PipelineRoles.Query);
            var embedder = host.Service<IEmbedder>();
            var decoder = host.Service<IImageDecoder>();
            var model = embedder.Model;
            Console.WriteLine(Header(model, embedder, s, photos.Length));

            if (s.Sections.Contains("embedding"))
            {
                using var pipeline = CliHost.Build(parse, gallery, Path.Combine(db, "pipeline"), PipelineRoles.Query, o => o["Embedding:Model"] = PipelineModel);
                await EmbeddingAsync(parse, s, pipeline.Service<IOptions<EmbeddingOptions>>().Value, pipeline.Service<IEmbedder>(), pipeline.Service<IImageDecoder>(), photos, db, table, notes, ct).ConfigureAwait(false);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"[embedding pipeline done at {started.Elapsed.TotalMinutes:F1} min]"));
            }

            if (s.Sections.Overlaps(["views", "vectors", "store", "gateway", "million"]))
            {
                var views = AugmentedViews.LoadOrCreate(cache, "base", s.Vectors, photos, decoder, embedder, ct);
                var queries = AugmentedViews.LoadOrCreate(cache, "queries", s.Queries, photos, decoder, embedder, ct);
                var set = new VectorSet($"{s.Vectors / 1000}k real", views.Data, views.Count, queries.Data, queries.Count, views.Dimensions);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"[vectors ready at {started.Elapsed.TotalMinutes:F1} min: {set.Count} base, {set.QueryCount} queries; median cosine of a query to its nearest base row {VectorBench.NearestNeighbourCosine(set, set.QueryCount):F3}]"));

                AnnResult? flat = null;
                if (s.Sections.Contains("vectors"))
                {
                    flat = await VectorsAsync(s, set, cache, table, notes, faissHnsw: true, withSse: true, efConstruction: 200, ct).ConfigureAwait(false);
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"[vector search done at {started.Elapsed.TotalMinutes:F1} min]"));
                }

                var storeFolder = Hosting.ImageSearchHosting.FolderName(model);
                if (s.Sections.Overlaps(["store", "gateway"]))
                {
                    var (root, buildSeconds, cached) = await StoreBench.BuildOrReuseAsync(cache, storeFolder, views, photos, decoder, model, ct).ConfigureAwait(false);
                    if (s.Sections.Contains("store"))
                    {
                        var folder = Path.Combine(root, storeFolder);
                        Store(StoreBench.Measure(folder, set, model, HnswVectorFormat.Float32, s.Efs, s.Threads, s.MinSeconds, ct),
                            StoreBench.Measure(folder, set, model, HnswVectorFormat.Int8, s.Efs, s.Threads, s.MinSeconds, ct), buildSeconds, cached, flat, table);
                        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"[store done at {started.Elapsed.TotalMinutes:F1} min]"));
                    }

                    if (s.Sections.Contains("gateway"))
                    {
                        // Every view carries local features, so each re-ranked search reads and
                        // matches all of its candidates, as on a real gallery. They are another
                        // photo's (half the gallery away): a view's own photo's features would make
                        // nearly all of a query's 100 candidates (mostly views of one photo) match
                        // in full, where in a real gallery only the true match does; here too only
                        // the gallery photo itself, indexed with its own features, verifies.
                        var extractor = host.Service<ILocalFeatureExtractor>();
                        var features = new Lazy<byte[][]>(() => photos.Select(p => extractor.Extract(File.ReadAllBytes(p), null).ToBytes()).ToArray()); // only if the cache misses
                        var (featureRoot, _, _) = await StoreBench.BuildOrReuseAsync(cache, storeFolder, views, photos, decoder, model, ct,
                            i => features.Value[(i + photos.Length / 2) % photos.Length]).ConfigureAwait(false);
                        host.Dispose(); // the gateway process loads its own model; free this one's memory
                        await GatewayAsync(s, featureRoot, Hosting.ImageSearchHosting.FolderName(model, localFeatures: true), table, ct).ConfigureAwait(false);
                        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"[gateway done at {started.Elapsed.TotalMinutes:F1} min]"));
                    }
                }

                if (s.Sections.Contains("million") && s.Million > s.Vectors)
                {
                    var cosine = VectorBench.NearestNeighbourCosine(set, set.QueryCount);
                    var big = new VectorSet($"{s.Million / 1000}k ({s.Vectors / 1000}k real + perturbed copies)",
                        VectorBench.Perturbed(views.Data, views.Count, s.Million, views.Dimensions, cosine, seed: 42), s.Million, queries.Data, queries.Count, views.Dimensions);
                    notes.Add(string.Create(CultureInfo.InvariantCulture,
                        $"The {s.Million / 1000}k set: the {s.Vectors / 1000}k real vectors, then copies of them (copy j of real row j mod {s.Vectors}) with isotropic Gaussian noise in the whitened 512-d space, scaled so a copy's cosine to its source is {cosine:F3} (the median cosine of a real query view to its nearest real base view), re-normalised. Queries: the same real held-out views. Not real embeddings: each real row gains ~{(s.Million - s.Vectors) / s.Vectors} near-duplicates. Built with efConstruction {MillionEfConstruction} by every library (time)."));
                    await VectorsAsync(s, big, cache, table, notes, faissHnsw: s.FaissMillion, withSse: false, efConstruction: MillionEfConstruction, ct).ConfigureAwait(false);
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"[large run done at {started.Elapsed.TotalMinutes:F1} min]"));
                }
            }

            notes.Add(File.Exists("/dev/nvidia0")
                ? "GPU: this machine has one; this bench runs the CPU. Measure the CUDA worker (images/s at batch 64) with `./imagesearch bench --device cuda`."
                : "GPU: none on this machine, so the CUDA worker (images/s at batch 64) is not measured here.");
            Console.WriteLine();
            Console.WriteLine(table.ToMarkdown());
            foreach (var note in notes)
            {
                Console.WriteLine("- " + note);
            }

            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"\nbench peers took {started.Elapsed.TotalMinutes:F1} min; figures vary by up to ±30% between runs on a shared VM: compare within one run."));
            return 0;
        }
        finally
        {
            if (Directory.Exists(db))
            {
                Directory.Delete(db, recursive: true);
            }
        }
    }

    private static string Header(EmbeddingModelInfo model, IEmbedder embedder, Settings s, int photos)
    {
        var cpu = File.Exists("/proc/cpuinfo")
            ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim()
            : null;
        return string.Create(CultureInfo.InvariantCulture,
            $"bench peers{(s.Quick ? " --quick" : "")}: {Environment.ProcessorCount} cores ({cpu ?? RuntimeInformation.ProcessArchitecture.ToString()}), {s.Threads} threads for every contender, {RuntimeInformation.FrameworkDescription}, {RuntimeInformation.OSDescription}\n" +
            $"model {model.Key} ({model.Dimensions}-d, {model.InputWidth}x{model.InputHeight}) on {embedder.Device}; gallery {photos} photos; HNSW M=16; ImageSearch distance kernel: {HnswIndex.DistanceKernel}");
    }

    // ---------------------------------------------------------------- embedding pipeline

    private static async Task EmbeddingAsync(ParseResult parse, Settings s, EmbeddingOptions options, IEmbedder embedder, IImageDecoder decoder, string[] photos, string db,
        Table table, List<string> notes, CancellationToken ct)
    {
        var seconds = s.Quick ? 0.5 : 2;
        var model = embedder.Model;
        var (bestRun, raw) = BenchCommand.MeasureModel(embedder, options, seconds, ct);

        // Same tensors through ONNX Runtime here and OpenCV DNN in the peer: the same model?
        var checkDir = Directory.CreateDirectory(Path.Combine(db, "check")).FullName;
        var checkCount = 4;
        var tensors = new float[checkCount * 3 * model.InputWidth * model.InputHeight];
        var images = new RgbImage[checkCount];
        for (var i = 0; i < checkCount; i++)
        {
            images[i] = decoder.Prepare(File.ReadAllBytes(photos[i * (photos.Length / checkCount)]), model.InputWidth, model.InputHeight).Pixels;
            var plane = model.InputWidth * model.InputHeight;
            var t = tensors.AsSpan(i * 3 * plane, 3 * plane);
            for (var p = 0; p < plane; p++)
            {
                for (var c = 0; c < 3; c++)
                {
                    t[(c * plane) + p] = images[i].Pixels[(3 * p) + c];
                }
            }
        }

        var rawVectors = embedder is OnnxEmbedder onnx ? onnx.EmbedRaw(images) : null;
        await File.WriteAllBytesAsync(Path.Combine(checkDir, "tensor.f32"), MemoryMarshal.AsBytes(tensors.AsSpan()).ToArray(), ct).ConfigureAwait(false);
        if (rawVectors is not null)
        {
            await File.WriteAllBytesAsync(Path.Combine(checkDir, "embeddings.f32"), MemoryMarshal.AsBytes(rawVectors.SelectMany(v => v).ToArray().AsSpan()).ToArray(), ct).ConfigureAwait(false);
        }

        // ImageSearch: the product's indexing pipeline, CNN only (the same work as the peer).
        var rates = new List<double>();
        for (var round = 0; round < (s.Quick ? 1 : 3); round++)
        {
            var folder = Path.Combine(db, $"index-cnn-{round}");
            var summary = await IndexCommand.RunAsync(parse, Path.Combine(s.BenchRoot, "gallery"), folder, progress: false, ct, o =>
            {
                o["Rerank:Enabled"] = "false";
                o["Embedding:Model"] = options.Model;
            }).ConfigureAwait(false);
            rates.Add(summary.Indexed / summary.Seconds);
        }

        rates.Sort();
        var cnnRate = rates[rates.Count / 2];

        // The product's default model (R-MAC pooling), which the peer cannot load: the same pipeline for context.
        var byDefault = await IndexCommand.RunAsync(parse, Path.Combine(s.BenchRoot, "gallery"), Path.Combine(db, "index-default"), progress: false, ct, o => o["Rerank:Enabled"] = "false").ConfigureAwait(false);
        var defaultRate = byDefault.Indexed / byDefault.Seconds;
        var withFeatures = await IndexCommand.RunAsync(parse, Path.Combine(s.BenchRoot, "gallery"), Path.Combine(db, "index-cnn-0"), progress: false, ct,
            o => o["Embedding:Model"] = options.Model).ConfigureAwait(false);
        var featuresRate = withFeatures.Indexed / withFeatures.Seconds;
        var queries = s.Quick ? 50 : 200;
        var (off50, off99) = await SearchLatencyAsync(parse, s.BenchRoot, Path.Combine(db, "index-cnn-0"), options.Model, queries, rerank: false, ct).ConfigureAwait(false);
        var (on50, on99) = await SearchLatencyAsync(parse, s.BenchRoot, Path.Combine(db, "index-cnn-0"), options.Model, queries, rerank: true, ct).ConfigureAwait(false);

        // The peer, on the same photos and queries with the same thread count.
        var args = new List<string>
        {
            Path.Combine(CliHost.RepoRoot, "bench", "peers", "opencv_pipeline.py"), "--model", Path.Combine(CliHost.RepoRoot, "models", options.Model, "model.onnx"),
            "--size", Str(model.InputWidth), "--gallery", Path.Combine(s.BenchRoot, "gallery"), "--threads", Str(s.Threads), "--seconds", Str(seconds),
            "--queries", Path.Combine(s.BenchRoot, "instance.tsv"), "--query-count", Str(queries),
        };
        if (rawVectors is not null)
        {
            args.AddRange(["--check-tensor", Path.Combine(checkDir, "tensor.f32"), "--check-embeddings", Path.Combine(checkDir, "embeddings.f32"),
                "--check-count", Str(checkCount), "--check-dims", Str(rawVectors[0].Length)]);
        }

        var (code, output, error) = await PeerProcess.RunAsync(PeerProcess.Python, args, ct).ConfigureAwait(false);
        var peer = "Python: OpenCV DNN + numpy";
        if (code != 0)
        {
            notes.Add($"The OpenCV peer failed (exit {code}): {error.Trim()}");
            table.Add("Embedding", "raw model, images/s", raw, peer, double.NaN);
            table.Add("Embedding", "decode + embed + index, images/s (local features off)", cnnRate, peer, double.NaN, ">= 2");
            return;
        }

        var json = JsonDocument.Parse(output).RootElement;
        var peerRaw = json.GetProperty("raw_model_images_per_s").GetDouble();
        var pipeline = json.GetProperty("pipeline");
        var search = json.GetProperty("search");
        table.Add("Embedding", $"raw model, images/s (pre-made input; ours: {bestRun}, peer: batch {json.GetProperty("raw_model_batch").GetInt32()})", raw, "OpenCV DNN", peerRaw);
        table.Add("Embedding", $"decode + embed + index, images/s, {photos.Length} photos, local features off ({(s.Quick ? "one index" : "median of 3 fresh indexes")})",
            cnnRate, peer, pipeline.GetProperty("images_per_s").GetDouble(), ">= 2", (o, t) => o / t >= 2);
        table.Add("Embedding", "ingestion / raw model of the same runtime", cnnRate / raw, peer + " (its own)", pipeline.GetProperty("images_per_s").GetDouble() / peerRaw,
            ">= 0.9 (ours)", (o, _) => o >= 0.9);
        table.Add("Embedding", "decode + embed + SIFT + index, images/s (default: local features on)", featuresRate, "-", double.NaN);
        table.Add("Embedding", "decode + embed + index, images/s, local features off, the default model (R-MAC pooling: OpenCV 4.6 cannot load its graph)", defaultRate, "-", double.NaN);
        notes.Add($"Embedding rows: model {options.Model} (the default backbone with average pooling) on both sides, except the row that names the default model: OpenCV 4.6's DNN module cannot import the default R-MAC graph (no LpNormalization layer).");
        table.Add("Embedding", $"single query in process, p50 ms ({queries} instance queries, read+decode+embed+k-NN over {photos.Length}; ours local features off)",
            off50, peer, search.GetProperty("p50_ms").GetDouble());
        table.Add("Embedding", "single query in process, p99 ms (local features off)", off99, peer, search.GetProperty("p99_ms").GetDouble());
        table.Add("Embedding", "single query in process, p50 / p99 ms, local features on (SIFT re-ranking of the top 100)", on50, "-", double.NaN,
            note: $"p99 {on99:F1}");
        if (json.TryGetProperty("check", out var check))
        {
            notes.Add(string.Create(CultureInfo.InvariantCulture,
                $"Same model in both runtimes: {check.GetProperty("images").GetInt32()} identical input tensors through ONNX Runtime and OpenCV DNN {json.GetProperty("opencv").GetString()}: raw {rawVectors![0].Length}-d embeddings agree to cosine >= {check.GetProperty("min_cosine").GetDouble():F6}, max abs difference {check.GetProperty("max_abs_diff").GetDouble():G3} (values up to {check.GetProperty("max_abs_value").GetDouble():F2})."));
        }

        notes.Add("Embedding peer: one Python loop (cv2.imread, cv2.dnn.blobFromImages resize to the input, net.forward per 16 photos, numpy normalise/stack), cv2.setNumThreads(" + Str(s.Threads) +
            "); its vectors are the raw model output (no calibration), searched by numpy dot product. ImageSearch: `./imagesearch index` (scan, read, SHA-256, libvips decode, ONNX Runtime batches, SQLite + HNSW upsert, catalog) with Rerank:Enabled=false, timed from a loaded model.");
    }

    private static async Task<(double P50, double P99)> SearchLatencyAsync(ParseResult parse, string benchRoot, string db, string modelName, int count, bool rerank, CancellationToken ct)
    {
        var set = BenchmarkSet.Load(benchRoot);
        using var host = CliHost.Build(parse, Path.Combine(benchRoot, "gallery"), db, PipelineRoles.Query, o =>
        {
            o["Rerank:Enabled"] = rerank ? "true" : "false";
            o["Embedding:Model"] = modelName;
        });
        await host.StartAsync(ct).ConfigureAwait(false);
        try
        {
            var search = host.Service<SearchService>();
            var total = new List<double>();
            foreach (var q in set.Instance.Take(count))
            {
                total.Add((await EvalCommand.RunTimedAsync(search, benchRoot, q, 10, ct, rerank: rerank).ConfigureAwait(false)).Milliseconds);
            }

            total.Sort();
            return (EvalCommand.Percentile(total, 0.5), EvalCommand.Percentile(total, 0.99));
        }
        finally
        {
            await host.StopAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }

    // ---------------------------------------------------------------- vector search

    private static async Task<AnnResult?> VectorsAsync(Settings s, VectorSet set, string cache, Table table, List<string> notes, bool faissHnsw, bool withSse, int efConstruction,
        CancellationToken ct)
    {
        var area = $"Vectors {set.Label}, efConstruction {efConstruction}";
        var ours = VectorBench.MeasureImageSearch(set, 16, efConstruction, s.Efs, s.Threads, s.MinSeconds);
        Console.WriteLine(Curve(ours));

        // The same graph with the SSE kernel the shim was limited to before run-time dispatch.
        AnnResult? sse = null;
        if (withSse && HnswIndex.DistanceKernel != "sse" && HnswIndex.SupportedDistanceKernels.Contains("sse"))
        {
            sse = VectorBench.MeasureImageSearch(set, 16, efConstruction, s.Efs, s.Threads, s.MinSeconds, "sse");
            Console.WriteLine(Curve(sse));
        }

        var files = set.WriteFiles(Path.Combine(cache, "run"));
        try
        {
            var peers = new List<AnnResult>();
            foreach (var lib in faissHnsw ? new[] { "faiss-hnsw", "hnswlib", "faiss-flat" } : ["hnswlib", "faiss-flat"])
            {
                var result = await VectorBench.RunPeerAsync(lib, set, files, 16, efConstruction, s.Efs, s.Threads, s.MinSeconds, s.Quick ? 3 : 10, ct).ConfigureAwait(false);
                Console.WriteLine(result.Error ?? Curve(result));
                peers.Add(result);
            }

            foreach (var peer in peers.Where(p => p.Rows.Count > 0 && p.Rows[0].Ef > 0))
            {
                var faiss = peer.Name.StartsWith("FAISS", StringComparison.Ordinal);
                var (a, b) = (ours.At(0.95), peer.At(0.95));
                table.Add(area, $"QPS at recall@10 >= 0.95 (ours ef {Ef(a)}, peer ef {Ef(b)})", a?.Qps ?? double.NaN, peer.Name, b?.Qps ?? double.NaN,
                    faiss ? ">= 1" : null, (o, t) => o >= t);
                var (a99, b99) = (ours.At(0.99), peer.At(0.99));
                table.Add(area, $"QPS at recall@10 >= 0.99 (ours ef {Ef(a99)}, peer ef {Ef(b99)})", a99?.Qps ?? double.NaN, peer.Name, b99?.Qps ?? double.NaN);
                table.Add(area, "build, s (all vectors, empty index)", ours.BuildSeconds, peer.Name, peer.BuildSeconds,
                    faiss ? "<= 1.5" : null, (o, t) => o <= 1.5 * t);
                table.Add(area, "index memory, bytes per vector (heap growth over the build)", ours.BytesPerVector, peer.Name, peer.BytesPerVector,
                    faiss ? "<= 1.5" : null, (o, t) => o <= 1.5 * t);
            }

            if (sse is not null)
            {
                var (a, b) = (ours.At(0.95), sse.At(0.95));
                table.Add(area, $"QPS at recall@10 >= 0.95, {HnswIndex.DistanceKernel} kernel (run-time dispatch) vs the SSE kernel of the x86-64-v2 build", a?.Qps ?? double.NaN,
                    sse.Name, b?.Qps ?? double.NaN);
                table.Add(area, $"build, s, {HnswIndex.DistanceKernel} vs SSE kernel", ours.BuildSeconds, sse.Name, sse.BuildSeconds);
            }

            var flat = peers.FirstOrDefault(p => p.Name.Contains("exact", StringComparison.Ordinal) && p.Rows.Count > 0);
            if (flat is not null && s.Million > 0 && set.Count >= s.Million)
            {
                table.Add(area, "exact search QPS (brute force: why HNSW)", double.NaN, flat.Name, flat.Rows[0].Qps);
            }

            if (!faissHnsw)
            {
                notes.Add($"FAISS HNSW was not built at {set.Label}: Debian's python3-faiss is a generic build whose distance is the scalar reference loop; its build time at the smaller size, scaled, runs to hours. `--faiss-hnsw-million` runs it anyway.");
            }

            foreach (var p in peers.Where(p => p.Error is not null))
            {
                notes.Add(p.Error!);
            }

            return flat;
        }
        finally
        {
            File.Delete(files.Base);
            File.Delete(files.Queries);
            File.Delete(files.Truth);
        }
    }

    private static string Ef(AnnRow? r) => r?.Ef.ToString(CultureInfo.InvariantCulture) ?? "-";

    private static string Curve(AnnResult r)
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"{r.Name} ({r.Version}): build {r.BuildSeconds:F1} s, {r.BytesPerVector:F0} bytes/vector;");
        foreach (var row in r.Rows)
        {
            sb.Append(CultureInfo.InvariantCulture, $" ef {row.Ef}: recall {row.Recall:F3} at {row.Qps:F0} QPS;");
        }

        return sb.ToString();
    }

    private static void Store(StoreFigures f, StoreFigures int8, double buildSeconds, bool cached, AnnResult? flat, Table table)
    {
        var area = $"Store {f.Points / 1000}k real";
        foreach (var x in new[] { f, int8 })
        {
            Console.WriteLine($"embedded store, {x.GraphVectors} graph: " + string.Join("; ", x.Rows.Select(r => string.Create(CultureInfo.InvariantCulture, $"ef {r.Ef}: recall {r.Recall:F3} at {r.Qps:F0} QPS"))));
        }

        AnnRow? Best(StoreFigures x) => x.Rows.Where(r => r.Recall >= 0.95).MaxBy(r => r.Qps);
        var (a, b) = (Best(f), Best(int8));
        table.Add(area, $"EmbeddedVectorStore.SearchAsync QPS at recall@10 >= 0.95 (float32 graph ef {Ef(a)}, int8 graph + rescoring ef {Ef(b)}; normalise, lock, payloads)",
            a?.Qps ?? double.NaN, "int8 graph (GraphVectors=Int8)", b?.Qps ?? double.NaN);
        var common = f.Rows.Select(r => r.Ef).Intersect(int8.Rows.Select(r => r.Ef)).DefaultIfEmpty(0).Min();
        if (common > 0)
        {
            table.Add(area, $"recall@10 at ef {common}, float32 graph vs int8 graph + rescoring", f.Rows.First(r => r.Ef == common).Recall, "int8 graph", int8.Rows.First(r => r.Ef == common).Recall,
                "int8 >= 0.95", (_, t) => t >= 0.95);
        }

        table.Add(area, "exact search QPS (EmbeddedVectorStore: SIMD scan of the float vectors)", f.ExactQps, flat?.Name ?? "-", flat?.Rows[0].Qps ?? double.NaN);
        table.Add(area, "memory per indexed image, bytes (heap growth on open: graph + float vectors + ids and payloads)", f.MemoryBytesPerPoint, "int8 graph", int8.MemoryBytesPerPoint);
        table.Add(area, "disk per indexed image, bytes (points.db + graph snapshot)", f.DiskBytesPerPoint, "int8 graph", int8.DiskBytesPerPoint);
        table.Add(area, $"build through UpsertAsync, s (1,000 per call, one graph insert at a time{(cached ? "; measured when the cache was built" : "")})", buildSeconds, "-", double.NaN);
        table.Add(area, $"open, s (float32: snapshot load; int8: rebuild of the graph from points.db on {Environment.ProcessorCount} threads)", f.OpenSeconds, "int8 graph", int8.OpenSeconds);
    }

    private static async Task GatewayAsync(Settings s, string storeRoot, string storeFolder, Table table, CancellationToken ct)
    {
        var (figures, points, rss) = await GatewayBench.RunAsync(storeRoot, storeFolder, s.BenchRoot, s.Quick ? 100 : 400, 4, ct).ConfigureAwait(false);
        var area = $"Gateway {points / 1000}k points";
        foreach (var f in figures)
        {
            var mode = f.Rerank ? "local features on" : "local features off";
            var clients = f.Clients == 1 ? "1 client" : $"{f.Clients} clients";
            table.Add(area, $"POST /api/search p50 ms, {clients}, {mode} ({f.Searches} searches, {f.Qps:F1}/s)", f.P50, "embedding p50 (server)", f.EmbedP50,
                f.Clients > 1 ? "p50 - embed <= 10 ms" : null, (o, t) => o - t <= 10);
            table.Add(area, $"POST /api/search p99 ms, {clients}, {mode}", f.P99, "own p50", f.P50, f.Clients > 1 ? "p99 / p50 < 2" : null, (o, t) => o < 2 * t);
            table.Add(area, $"server time after the embedding, p50 ms, {clients}, {mode} (k-NN{(f.Rerank ? ", the query's SIFT if not done, reading and matching 100 candidates" : "")})", f.SearchP50, "-", double.NaN,
                note: GatewayBench.Describe(f.Server));
        }

        table.Add(area, "gateway process working set, MiB (model and ONNX Runtime, index, catalog, ASP.NET)", rss / (1024 * 1024), "-", double.NaN);
    }

    private static string Str(double v) => v.ToString(CultureInfo.InvariantCulture);

    /// <summary>The one table: each figure, its peer's, the ratio, and the target where the issue sets one.</summary>
    internal sealed class Table
    {
        private readonly List<string> rows = [];

        /// <summary>One row; <paramref name="met"/> decides the target from (ours, theirs).</summary>
        public void Add(string area, string measure, double ours, string peer, double theirs, string? target = null, Func<double, double, bool>? met = null, string? note = null)
        {
            var ratio = double.IsFinite(ours) && double.IsFinite(theirs) && theirs != 0 ? ours / theirs : double.NaN;
            var verdict = "";
            if (target is not null && met is not null)
            {
                verdict = $"{target}: {(met(ours, theirs) ? "met" : "**not met**")}";
            }

            rows.Add(string.Create(CultureInfo.InvariantCulture,
                $"| {area} | {measure} | {Fmt(ours)}{(note is null ? "" : $" ({note})")} | {peer} | {Fmt(theirs)} | {(double.IsNaN(ratio) ? "-" : ratio.ToString("F2", CultureInfo.InvariantCulture))} | {verdict} |"));
        }

        public string ToMarkdown() =>
            "| area | measure | ImageSearch | peer | peer's figure | ratio (ours / peer) | target |\n|---|---|---|---|---|---|---|\n" + string.Join('\n', rows);

        private static string Fmt(double v) => double.IsNaN(v) ? "-" : Math.Abs(v) >= 100 ? v.ToString("F0", CultureInfo.InvariantCulture) : Math.Abs(v) >= 10 ? v.ToString("F1", CultureInfo.InvariantCulture) : v.ToString("F3", CultureInfo.InvariantCulture);
    }
}
