using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using ImageSearch.Core;
using ImageSearch.VectorStore;

namespace ImageSearch.Cli.Peers;

/// <summary>What the embedded store costs per point and how fast it answers.</summary>
internal sealed record StoreFigures(int Points, HnswVectorFormat GraphVectors, double OpenSeconds, bool Rebuilt, double MemoryBytesPerPoint, double DiskBytesPerPoint,
    IReadOnlyList<AnnRow> Rows, double ExactQps);

/// <summary>
/// A large embedded store (<see cref="EmbeddedVectorStore"/>, the product's own) holding the
/// augmented-view vectors, each point's payload naming the real gallery photo it was made from, so
/// a gateway can serve it. Built once through <see cref="IVectorStore.UpsertAsync"/> (1,000 points
/// per call, the indexer's path: SQLite commit, then one graph insert per point) and cached.
/// </summary>
internal static class StoreBench
{
    private const int Version = 1;

    /// <summary>
    /// The cached index root (holding one store folder named <paramref name="storeFolder"/>), built if
    /// missing. With <paramref name="localFeatures"/> (the serialised local features a view of photo
    /// <c>i</c> of <paramref name="photos"/> carries) every point has local features, so a re-ranked
    /// search reads and matches every candidate, as on a real gallery of that size (a separate cache:
    /// ~28 KB more per point).
    /// </summary>
    public static async Task<(string Root, double BuildSeconds, bool Cached)> BuildOrReuseAsync(string cacheDirectory, string storeFolder, AugmentedViews views,
        string[] photos, IImageDecoder decoder, EmbeddingModelInfo model, CancellationToken ct, Func<int, byte[]>? localFeatures = null)
    {
        var root = Path.Combine(cacheDirectory, localFeatures is null ? $"store-{views.Count}" : $"store-{views.Count}-other-features");
        var stamp = Path.Combine(root, "built.json");
        var folder = Path.Combine(root, storeFolder);
        if (File.Exists(stamp) && Directory.Exists(folder) &&
            JsonSerializer.Deserialize<Stamp>(await File.ReadAllTextAsync(stamp, ct).ConfigureAwait(false)) is { } s && s.Version == Version && s.Model == model.Key)
        {
            return (root, s.Seconds, true);
        }

        if (Directory.Exists(root))
        {
            Directory.Delete(root, recursive: true);
        }

        Console.Error.WriteLine($"bench peers: building an embedded store of {views.Count} points in {root} (cached for later runs)");
        var payloads = photos.Select(p =>
        {
            var info = decoder.ReadInfo(File.ReadAllBytes(p));
            return (Name: Path.GetFileName(p), Size: new FileInfo(p).Length, info.Width, info.Height);
        }).ToArray();
        var added = new DateTimeOffset(2025, 1, 1, 0, 0, 0, TimeSpan.Zero);
        var t = Stopwatch.GetTimestamp();

        // One snapshot at the end (on dispose), not one per 1,000 changes: each would write the whole graph.
        using (var store = new EmbeddedVectorStore(new EmbeddedStoreOptions { Directory = folder, SnapshotEvery = int.MaxValue }, model))
        {
            for (var start = 0; start < views.Count; start += 1000)
            {
                var batch = new List<VectorRecord>();
                for (var i = start; i < Math.Min(views.Count, start + 1000); i++)
                {
                    var (id, hash) = PointId(i);
                    var p = payloads[views.PhotoOf(i)];
                    batch.Add(new VectorRecord(id, views.Row(i).ToArray(), new ImagePayload(p.Name, p.Size, p.Width, p.Height, hash, added),
                        localFeatures?.Invoke(views.PhotoOf(i))));
                }

                await store.UpsertAsync(batch, ct).ConfigureAwait(false);
            }
        }

        var seconds = Stopwatch.GetElapsedTime(t).TotalSeconds;
        await File.WriteAllTextAsync(stamp, JsonSerializer.Serialize(new Stamp(Version, model.Key, views.Count, seconds)), ct).ConfigureAwait(false);
        return (root, seconds, false);
    }

    /// <summary>
    /// Opens a copy of the cached store with the graph in <paramref name="graphVectors"/> (int8: the
    /// float snapshot does not match, so the store rebuilds the graph from its database, on every
    /// core) and measures memory, disk, HNSW search at each ef and exact search, through its public API.
    /// </summary>
    public static StoreFigures Measure(string folder, VectorSet set, EmbeddingModelInfo model, HnswVectorFormat graphVectors, int[] efs, int threads,
        double minSeconds, CancellationToken ct)
    {
        // Work on a copy: opening writes (WAL, lock) and the cache must stay pristine for the gateway.
        var copy = Path.Combine(Path.GetTempPath(), $"imagesearch-peers-store-{Environment.ProcessId}");
        CopyDirectory(folder, copy);
        try
        {
            var disk = Directory.EnumerateFiles(copy).Sum(f => new FileInfo(f).Length);
            var before = NativeHeap.Total();
            var t = Stopwatch.GetTimestamp();
            using var store = new EmbeddedVectorStore(new EmbeddedStoreOptions { Directory = copy, SnapshotEvery = int.MaxValue, ExactThreshold = 0, GraphVectors = graphVectors }, model);
            var open = Stopwatch.GetElapsedTime(t).TotalSeconds;
            var memory = NativeHeap.Total() - before;
            if (store.OpenInfo.Rebuilt)
            {
                // The rebuilt graph is not on disk until a snapshot is saved: count what it will take.
                store.Dispose();
                disk = Directory.EnumerateFiles(copy).Sum(f => new FileInfo(f).Length);
                using var reopened = new EmbeddedVectorStore(new EmbeddedStoreOptions { Directory = copy, SnapshotEvery = int.MaxValue, ExactThreshold = 0, GraphVectors = graphVectors }, model);
                return Run(reopened, open, rebuilt: true, memory, disk);
            }

            return Run(store, open, rebuilt: false, memory, disk);
        }
        finally
        {
            Directory.Delete(copy, recursive: true);
        }

        StoreFigures Run(EmbeddedVectorStore store, double open, bool rebuilt, long memory, long disk)
        {
            var rowOf = new Dictionary<ImageId, int>(set.Count);
            for (var i = 0; i < set.Count; i++)
            {
                rowOf[PointId(i).Id] = i;
            }

            int Search(int q, Span<long> labels, bool exact, int ef)
            {
                var hits = store.SearchAsync(set.Queries.AsSpan(q * set.Dimensions, set.Dimensions).ToArray(), new VectorQuery(VectorSet.K, exact, ef), ct).GetAwaiter().GetResult();
                for (var i = 0; i < hits.Count; i++)
                {
                    labels[i] = rowOf[hits[i].Id];
                }

                return hits.Count;
            }

            var rows = new List<AnnRow>();
            foreach (var ef in efs)
            {
                var found = new long[set.QueryCount * VectorSet.K];
                VectorBench.SearchAll(set, threads, (q, l, _) => Search(q, l, false, ef), found);
                var recall = Enumerable.Range(0, set.QueryCount).Average(q => set.Recall(found.AsSpan(q * VectorSet.K, VectorSet.K), q));
                rows.Add(new AnnRow(ef, recall, VectorBench.Throughput(set, threads, minSeconds, (q, l, _) => Search(q, l, false, ef))));
            }

            var exactQps = VectorBench.Throughput(set, threads, minSeconds, (q, l, _) => Search(q, l, true, 0));
            return new StoreFigures(set.Count, graphVectors, open, rebuilt, memory / (double)set.Count, disk / (double)set.Count, rows, exactQps);
        }
    }

    /// <summary>The id and content hash of augmented view <paramref name="row"/> (not the photo's: each view is its own point).</summary>
    public static (ImageId Id, string Hash) PointId(int row)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"imagesearch bench peers view {row}")));
        return (ImageId.FromContentHash(hash), Convert.ToHexStringLower(hash));
    }

    public static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.EnumerateFiles(from))
        {
            var name = Path.GetFileName(file);
            if (name != "store.lock")
            {
                File.Copy(file, Path.Combine(to, name), overwrite: true);
            }
        }
    }

    private sealed record Stamp(int Version, string Model, int Points, double Seconds);
}
