using System.Diagnostics;
using System.Globalization;
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json;
using ImageSearch.Core;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace ImageSearch.VectorStore;

/// <summary>
/// The default <see cref="IVectorStore"/>: everything in one folder, no server.
/// </summary>
/// <remarks>
/// <para>
/// Files: <c>manifest.json</c> (model key and dimension; a mismatch refuses to open),
/// <c>points.db</c> (SQLite, the source of truth: points, a deletes log, counters),
/// <c>hnsw-&lt;seq&gt;.bin</c> + <c>hnsw.meta.json</c> (the latest HNSW graph snapshot and its commit
/// record), <c>store.lock</c> (held while open: one instance per folder, across processes).
/// </para>
/// <para>
/// Durability: an upsert or delete is durable when its SQLite transaction commits (WAL,
/// synchronous=FULL), before the in-memory graph changes and before the task completes. Every changed
/// point gets the next value of a seq counter. The graph is only a cache: a snapshot is saved (temp
/// file, fsync, rename, then the meta record the same way) every
/// <see cref="EmbeddedStoreOptions.SnapshotEvery"/> changes and on Dispose; opening loads it and
/// replays the points and deletes with a higher seq. A missing, damaged or disagreeing snapshot is
/// discarded and the graph rebuilt from the database.
/// </para>
/// <para>
/// Memory: all vectors are held twice (in the graph and in an arena used for exact search and
/// <see cref="GetAsync"/>), with links and payloads: roughly 2 * Dimensions * 4 + 600 bytes per
/// point (1M x 512-d: ~4.7 GB). With <see cref="EmbeddedStoreOptions.GraphVectors"/> = Int8 the
/// graph's copy takes Dimensions + 4 bytes instead, and searches rescore the graph's beam with the
/// arena's floats. Opening reads every point from the database.
/// </para>
/// <para>
/// Vectors are L2-normalised on write and on query (as a cosine-distance server such as Qdrant
/// does), so scores are cosine similarities; <see cref="GetAsync"/> returns the normalised vector.
/// </para>
/// <para>
/// Concurrency: any number of concurrent searches, gets and counts; writes are serialised. A write
/// commits without blocking readers, then applies each point under a short exclusive lock, so a
/// search sees every point either entirely before or entirely after its change (a batch may be seen
/// partly applied; it is complete when the task completes).
/// </para>
/// </remarks>
public sealed partial class EmbeddedVectorStore : IVectorStore
{
    private const string LockFileName = "store.lock";

    /// <summary>
    /// Whether the store folder <paramref name="directory"/> holds any point, read without opening the
    /// store (another process may have it open): false for an empty store, or a folder that is none.
    /// </summary>
    public static bool HoldsPoints(string directory) => PointDatabase.HoldsPoints(Path.Combine(directory, PointDatabase.FileName));
    private const int MinCapacity = 1024;
    private const ulong GraphSeed = 100;
    private const int ParallelRebuildThreshold = 4096;

    // SQLite primary result codes: SQLITE_IOERR and SQLITE_FULL ("database or disk is full").
    private const int SqliteIoError = 10;
    private const int SqliteFull = 13;

    // Vectors copied per native batch insert during a rebuild (bounds the transient copy: 12 MB at 768-d).
    private const int RebuildBatch = 4096;

    private readonly string _directory;
    private readonly int _m;
    private readonly int _efConstruction;
    private readonly int _efSearch;
    private readonly int _snapshotEvery;
    private readonly int _exactThreshold;
    private readonly HnswVectorFormat _graphVectors;
    private readonly ILogger _logger;
    private readonly FileStream _lockFile;
    private readonly PointDatabase _database;
    private readonly ExactIndex _vectors;
    private readonly Dictionary<ImageId, Point> _byId = [];

    // Points stored with local features; read and written only by the writer (and at open).
    private HashSet<ImageId> _withFeatures = [];
    private FeatureReader? _features;
    private readonly Dictionary<long, Point> _byLabel = [];

    // Guards the in-memory state (_graph, _vectors, the maps) between searches and the applying writer.
    // Deliberately never disposed: a caller racing with Dispose then gets ObjectDisposedException from
    // the _disposed check rather than a fault from a disposed lock.
    private readonly ReaderWriterLockSlim _lock = new(LockRecursionPolicy.NoRecursion);

    // Serialises writers (and Dispose). Async so waiting writers do not block threads.
    private readonly SemaphoreSlim _writer = new(1, 1);

    private HnswIndex _graph = null!;
    private long _seq;
    private long _nextLabel;
    private long _snapshotSeq;
    private string? _snapshotFile;
    private long _changesSinceSnapshot;
    private volatile Exception? _fault;
    private volatile string? _writeError;
    private volatile bool _disposed;

    /// <summary>Opens (or creates) the index in <see cref="EmbeddedStoreOptions.Directory"/>.</summary>
    /// <param name="options">Settings; validated.</param>
    /// <param name="model">The embedding model whose vectors this index holds (checked against the manifest).</param>
    /// <param name="logger">Optional logger.</param>
    /// <exception cref="InvalidOperationException">The folder belongs to another model or dimension, or is open elsewhere.</exception>
    public EmbeddedVectorStore(EmbeddedStoreOptions options, EmbeddingModelInfo model, ILogger<EmbeddedVectorStore>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(model);
        options.ThrowIfInvalid();
        ArgumentOutOfRangeException.ThrowIfLessThan(model.Dimensions, 1, nameof(model));

        var started = Stopwatch.GetTimestamp();
        _directory = Path.GetFullPath(options.Directory);
        _m = options.M;
        _efConstruction = options.EfConstruction;
        _efSearch = options.EfSearch;
        _snapshotEvery = options.SnapshotEvery;
        _exactThreshold = options.ExactThreshold;
        _graphVectors = options.GraphVectors;
        _logger = logger ?? NullLogger<EmbeddedVectorStore>.Instance;
        Dimensions = model.Dimensions;
        ModelKey = model.Key;
        _vectors = new ExactIndex(Dimensions);

        Directory.CreateDirectory(_directory);
        _lockFile = AcquireLock(_directory);
        try
        {
            CheckManifest();
            _database = new PointDatabase(Path.Combine(_directory, PointDatabase.FileName));
            _withFeatures = _database.ReadFeatureIds();
            _features = new FeatureReader(Path.Combine(_directory, PointDatabase.FileName));
            var pointSeqs = LoadPoints();
            OpenInfo = OpenGraph(pointSeqs, started);
            DeleteStrayFiles();
        }
        catch
        {
            _graph?.Dispose();
            _features?.Dispose();
            _database?.Dispose();
            _lockFile.Dispose();
            throw;
        }

        Log.Opened(_logger, _directory, ModelKey, OpenInfo.Points, OpenInfo.SnapshotSeq, OpenInfo.ReplayedUpserts,
            OpenInfo.ReplayedDeletes, OpenInfo.RebuildReason ?? "none", OpenInfo.Elapsed.TotalMilliseconds);
    }

    /// <inheritdoc />
    public int Dimensions { get; }

    /// <summary>Model key ("name@version") recorded in the manifest.</summary>
    public string ModelKey { get; }

    /// <summary>How the graph was obtained at open (snapshot + replay, or rebuild and why).</summary>
    public StoreOpenInfo OpenInfo { get; }

    /// <summary>
    /// Why the last write (upsert or delete) failed to commit, e.g. a full disk; null once a write
    /// commits again. Health checks report it: the store keeps answering reads meanwhile.
    /// </summary>
    public string? LastWriteError => _writeError;

    /// <summary>Last seq committed (for tests and diagnostics).</summary>
    internal long LastSeq => Volatile.Read(ref _seq);

    /// <summary>Live elements in the graph, which must equal the point count (for tests).</summary>
    internal long GraphLiveCount
    {
        get
        {
            _lock.EnterReadLock();
            try
            {
                return _graph.Count - _graph.DeletedCount;
            }
            finally
            {
                _lock.ExitReadLock();
            }
        }
    }

    /// <inheritdoc />
    /// <remarks>
    /// Later records in the batch win over earlier ones with the same id. A record whose normalised
    /// vector (bit for bit) and payload (record equality: timestamps compare as instants) equal what
    /// is stored changes nothing (no seq, no write). A payload-only change is written but leaves the
    /// graph untouched; a changed vector is re-linked in place (hnswlib updatePoint, ~10x an insert). Throws
    /// <see cref="ArgumentException"/> for a wrong dimension or a zero or non-finite vector, before
    /// anything is written. Cancellation is honoured until the commit starts.
    /// </remarks>
    public async Task UpsertAsync(IReadOnlyList<VectorRecord> records, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(records);
        ThrowIfUnusable();
        var latest = new Dictionary<ImageId, (float[] Vector, ImagePayload Payload, byte[]? Features)>(records.Count);
        foreach (var record in records)
        {
            ArgumentNullException.ThrowIfNull(record, nameof(records));
            if (record.Id.Value is null)
            {
                throw new ArgumentException("A record has no id.", nameof(records));
            }

            if (record.Payload is not { Path: not null, ContentHash: not null })
            {
                throw new ArgumentException($"Record {record.Id} needs a payload with a path and a content hash.", nameof(records));
            }

            latest[record.Id] = (Normalize(record.Vector, nameof(records)), record.Payload, record.LocalFeatures);
        }

        if (latest.Count == 0)
        {
            return;
        }

        await _writer.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ThrowIfUnusable();
            var writes = new List<PointWrite>(latest.Count);
            var seq = _seq;
            var nextLabel = _nextLabel;
            foreach (var (id, (vector, payload, features)) in latest)
            {
                // Only this writer mutates the maps, so reading them without _lock is safe here.
                if (_byId.TryGetValue(id, out var existing))
                {
                    var vectorChanged = !SameBits(_vectors.Get(existing.Label), vector);
                    if (!vectorChanged && existing.Payload == payload && (features is null || _withFeatures.Contains(id)))
                    {
                        continue;
                    }

                    writes.Add(new PointWrite(id, existing.Label, ++seq, vector, payload, IsNew: false, vectorChanged, features));
                }
                else
                {
                    writes.Add(new PointWrite(id, nextLabel++, ++seq, vector, payload, IsNew: true, VectorChanged: true, features));
                }
            }

            if (writes.Count == 0)
            {
                return;
            }

            cancellationToken.ThrowIfCancellationRequested();
            Commit(() => _database.CommitUpserts(writes, seq, nextLabel));
            _withFeatures.UnionWith(writes.Where(w => w.LocalFeatures is not null).Select(w => w.Id));
            Volatile.Write(ref _seq, seq);
            _nextLabel = nextLabel;
            ApplyCommitted(writes.Count, i => ApplyUpsert(writes[i]));
            AfterChanges(writes.Count);
        }
        finally
        {
            _writer.Release();
        }
    }

    /// <inheritdoc />
    public async Task<int> DeleteAsync(IReadOnlyList<ImageId> ids, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(ids);
        ThrowIfUnusable();
        await _writer.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ThrowIfUnusable();
            var deletes = new List<PointDelete>();
            var seq = _seq;
            var seen = new HashSet<ImageId>();
            foreach (var id in ids)
            {
                if (id.Value is not null && seen.Add(id) && _byId.TryGetValue(id, out var existing))
                {
                    deletes.Add(new PointDelete(id, existing.Label, ++seq));
                }
            }

            if (deletes.Count == 0)
            {
                return 0;
            }

            cancellationToken.ThrowIfCancellationRequested();
            Commit(() => _database.CommitDeletes(deletes, seq));
            _withFeatures.ExceptWith(deletes.Select(d => d.Id));
            Volatile.Write(ref _seq, seq);
            ApplyCommitted(deletes.Count, i => ApplyDelete(deletes[i]));
            AfterChanges(deletes.Count);
            return deletes.Count;
        }
        finally
        {
            _writer.Release();
        }
    }

    /// <inheritdoc />
    /// <remarks>
    /// Exact (a SIMD scan of the in-memory vectors) when <see cref="VectorQuery.Exact"/> is set or the
    /// store holds fewer than <see cref="EmbeddedStoreOptions.ExactThreshold"/> points; otherwise HNSW
    /// with beam max(Ef or EfSearch, Top). Runs synchronously on the calling thread.
    /// </remarks>
    public Task<IReadOnlyList<SearchHit>> SearchAsync(float[] query, VectorQuery options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(query);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Top, 1, nameof(options));
        ArgumentOutOfRangeException.ThrowIfNegative(options.Ef, nameof(options));
        cancellationToken.ThrowIfCancellationRequested();
        var normalized = Normalize(query, nameof(query));

        _lock.EnterReadLock();
        try
        {
            ThrowIfUnusable();
            var live = _byId.Count;
            if (live == 0)
            {
                return Task.FromResult<IReadOnlyList<SearchHit>>([]);
            }

            var k = Math.Min(options.Top, live);
            var labels = new long[k];
            var scores = new float[k];
            int found;
            if (options.Exact || live < _exactThreshold)
            {
                found = _vectors.Search(normalized, k, labels, scores);
            }
            else if (_graphVectors == HnswVectorFormat.Int8)
            {
                found = SearchAndRescore(normalized, k, options.Ef > 0 ? options.Ef : _efSearch, labels, scores);
            }
            else
            {
                found = _graph.Search(normalized, k, options.Ef > 0 ? options.Ef : _efSearch, labels, scores);
                for (var i = 0; i < found; i++)
                {
                    scores[i] = 1f - scores[i];
                }
            }

            var hits = new SearchHit[found];
            for (var i = 0; i < found; i++)
            {
                var point = _byLabel[labels[i]];
                hits[i] = new SearchHit(point.Id, scores[i], point.Payload);
            }

            return Task.FromResult<IReadOnlyList<SearchHit>>(hits);
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    /// <summary>
    /// An int8 graph ranks by approximate distances: take its whole beam (max(ef, k) candidates) and
    /// rank them by the exact dot product with the float vectors held for exact search. Callers hold
    /// the read lock.
    /// </summary>
    private int SearchAndRescore(float[] query, int k, int ef, long[] labels, float[] scores)
    {
        var beam = Math.Max(ef, k);
        var candidates = new long[beam];
        var distances = new float[beam];
        var found = _graph.Search(query, beam, beam, candidates, distances);
        for (var i = 0; i < found; i++)
        {
            distances[i] = TensorPrimitives.Dot(query, _vectors.Get(candidates[i]));
        }

        // Highest dot first; ties keep the graph's order.
        var order = Enumerable.Range(0, found).OrderByDescending(i => distances[i]).ThenBy(i => i).Take(k).ToArray();
        for (var i = 0; i < order.Length; i++)
        {
            labels[i] = candidates[order[i]];
            scores[i] = distances[order[i]];
        }

        return order.Length;
    }

    /// <inheritdoc />
    public Task<VectorRecord?> GetAsync(ImageId id, CancellationToken cancellationToken = default)
    {
        _lock.EnterReadLock();
        try
        {
            ThrowIfUnusable();
            return Task.FromResult(id.Value is not null && _byId.TryGetValue(id, out var point)
                ? new VectorRecord(point.Id, _vectors.Get(point.Label).ToArray(), point.Payload)
                : null);
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    /// <inheritdoc />
    /// <remarks>Read from points.db on a pooled read-only connection; never blocks on a running write.</remarks>
    public Task<IReadOnlyDictionary<ImageId, byte[]>> GetLocalFeaturesAsync(IReadOnlyList<ImageId> ids, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(ids);
        _lock.EnterReadLock();
        try
        {
            ThrowIfUnusable();
            return Task.FromResult<IReadOnlyDictionary<ImageId, byte[]>>(_features!.Read(ids));
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    /// <inheritdoc />
    public Task<long> CountAsync(CancellationToken cancellationToken = default)
    {
        _lock.EnterReadLock();
        try
        {
            ThrowIfUnusable();
            return Task.FromResult((long)_byId.Count);
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    /// <summary>
    /// Waits for a running write, saves a snapshot if anything changed since the last one (so the
    /// next open replays nothing), checkpoints the WAL and releases the folder.
    /// </summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _writer.Wait();
        try
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            if (_fault is null && _seq != _snapshotSeq)
            {
                TrySaveSnapshot();
            }

            try
            {
                _database.Checkpoint();
            }
            catch (Exception ex)
            {
                // The WAL is still valid; SQLite checkpoints it on the next open.
                Log.CheckpointFailed(_logger, ex, _directory);
            }

            _database.Dispose();
            _lock.EnterWriteLock();
            try
            {
                _graph.Dispose();
                _features?.Dispose();
            }
            finally
            {
                _lock.ExitWriteLock();
            }

            _lockFile.Dispose();
        }
        finally
        {
            _writer.Release();
        }
    }

    private static FileStream AcquireLock(string directory)
    {
        var path = Path.Combine(directory, LockFileName);
        try
        {
            // FileShare.None takes an exclusive advisory lock (flock) on Unix: a second store on the
            // same folder, in this process or another, fails here instead of corrupting the graph.
            return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException ex)
        {
            throw new InvalidOperationException($"The vector store in '{directory}' is already open (by this or another process).", ex);
        }
    }

    private void CheckManifest()
    {
        var path = Path.Combine(_directory, StoreManifest.FileName);
        StoreManifest? manifest;
        try
        {
            manifest = StoreJson.Read<StoreManifest>(path);
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"'{path}' is not a valid manifest: {ex.Message}", ex);
        }

        if (manifest is null)
        {
            if (File.Exists(Path.Combine(_directory, PointDatabase.FileName)))
            {
                throw new InvalidOperationException(
                    $"'{_directory}' holds a vector database but no {StoreManifest.FileName}, so which model its vectors come from is unknown; refusing to open it.");
            }

            DurableFile.WriteAllBytes(path, StoreJson.Serialize(new StoreManifest(StoreManifest.CurrentFormat, ModelKey, Dimensions, DateTimeOffset.UtcNow)));
            return;
        }

        if (manifest.Format != StoreManifest.CurrentFormat)
        {
            throw new InvalidOperationException($"'{path}' has format {manifest.Format}; this build understands {StoreManifest.CurrentFormat}.");
        }

        if (manifest.Model != ModelKey || manifest.Dimensions != Dimensions)
        {
            throw new InvalidOperationException(
                $"The index in '{_directory}' holds vectors of model '{manifest.Model}' ({manifest.Dimensions} dimensions), " +
                $"not '{ModelKey}' ({Dimensions} dimensions). Vectors of different models cannot share an index: " +
                "use one directory per model, or delete this one to re-index.");
        }
    }

    /// <summary>Fills the arena and maps from the database; returns each point's (label, seq) for replay.</summary>
    private List<(long Label, long Seq)> LoadPoints()
    {
        (_seq, _nextLabel) = _database.ReadCounters();
        var pointSeqs = new List<(long Label, long Seq)>();
        _database.ReadPoints(Dimensions, (stored, vector) =>
        {
            _vectors.Set(stored.Label, vector);
            var point = new Point(stored.Id, stored.Label, stored.Payload);
            _byId.Add(point.Id, point);
            _byLabel.Add(point.Label, point);
            pointSeqs.Add((stored.Label, stored.Seq));
            if (stored.Label >= _nextLabel || stored.Seq > _seq)
            {
                throw new InvalidDataException($"'{PointDatabase.FileName}' counters are behind its rows (label {stored.Label}, seq {stored.Seq}).");
            }
        });
        return pointSeqs;
    }

    private StoreOpenInfo OpenGraph(List<(long Label, long Seq)> pointSeqs, long started)
    {
        var (reason, meta) = ReadSnapshotMeta();
        if (meta is not null)
        {
            try
            {
                var (upserts, deletes) = LoadSnapshotAndReplay(meta, pointSeqs);
                if (_graph.DeletedCount > Math.Max(MinCapacity, _byId.Count))
                {
                    // Deleted points keep their slot and stay in the graph as routing nodes; once
                    // they outnumber the live ones, a rebuild is smaller and searches faster.
                    reason = $"compacting {_graph.DeletedCount} deleted points";
                }
                else
                {
                    _snapshotSeq = meta.Seq;
                    _snapshotFile = meta.File;
                    _changesSinceSnapshot = upserts + deletes;
                    if (_changesSinceSnapshot >= _snapshotEvery)
                    {
                        TrySaveSnapshot();
                    }

                    return new StoreOpenInfo(_byId.Count, meta.Seq, upserts, deletes, null, Stopwatch.GetElapsedTime(started));
                }
            }
            catch (HnswException ex)
            {
                reason = $"snapshot {meta.File} unusable: {ex.Message}";
            }
        }

        Log.Rebuilding(_logger, _directory, _byId.Count, reason);
        Rebuild();
        if (_byId.Count > 0)
        {
            TrySaveSnapshot();
        }

        return new StoreOpenInfo(_byId.Count, 0, 0, 0, reason, Stopwatch.GetElapsedTime(started));
    }

    /// <summary>The snapshot meta if it names an intact snapshot for this store; otherwise why not.</summary>
    private (string Reason, SnapshotMeta? Meta) ReadSnapshotMeta()
    {
        var metaPath = Path.Combine(_directory, SnapshotMeta.FileName);
        SnapshotMeta? meta;
        try
        {
            meta = StoreJson.Read<SnapshotMeta>(metaPath);
        }
        catch (JsonException ex)
        {
            return ($"{SnapshotMeta.FileName} is malformed: {ex.Message}", null);
        }

        if (meta is null)
        {
            return ("no snapshot", null);
        }

        // The file must be a plain name in this folder (the meta file is input like any other).
        if (meta.Format != SnapshotMeta.CurrentFormat || meta.File is null || meta.File != Path.GetFileName(meta.File) || meta.Sha256 is null)
        {
            return ($"{SnapshotMeta.FileName} has an unknown format", null);
        }

        if (meta.Dimensions != Dimensions)
        {
            return ($"snapshot has {meta.Dimensions} dimensions, not {Dimensions}", null);
        }

        if (meta.Vectors != _graphVectors)
        {
            return ($"snapshot stores {meta.Vectors} vectors, the store is set to {_graphVectors}", null);
        }

        if (meta.Seq > _seq)
        {
            // The database lost commits the snapshot saw (e.g. it was restored from a backup).
            return ($"snapshot seq {meta.Seq} is ahead of the database ({_seq})", null);
        }

        var file = Path.Combine(_directory, meta.File);
        var info = new FileInfo(file);
        if (!info.Exists)
        {
            return ($"snapshot {meta.File} is missing", null);
        }

        if (info.Length != meta.Length || !string.Equals(HashFile(file), meta.Sha256, StringComparison.Ordinal))
        {
            return ($"snapshot {meta.File} fails its checksum", null);
        }

        return ("", meta);
    }

    private (int Upserts, int Deletes) LoadSnapshotAndReplay(SnapshotMeta meta, List<(long Label, long Seq)> pointSeqs)
    {
        var pending = pointSeqs.Count(p => p.Seq > meta.Seq);
        var capacity = CapacityFor(meta.Elements + pending);
        _graph = HnswIndex.Load(Path.Combine(_directory, meta.File), Dimensions, capacity, GraphSeed + (ulong)meta.Seq, _graphVectors);

        var upserts = 0;
        foreach (var (label, seq) in pointSeqs)
        {
            if (seq > meta.Seq)
            {
                upserts++;
                var state = _graph.GetState(label);
                var vector = _vectors.Get(label);
                if (state == HnswLabelState.Live && _graph.Holds(label, vector))
                {
                    continue; // only the payload changed since the snapshot
                }

                EnsureCapacity(state);
                _graph.Add(label, vector, replace: state != HnswLabelState.Absent);
            }
        }

        var deletes = 0;
        foreach (var label in _database.ReadDeletedLabelsSince(meta.Seq))
        {
            // A label inserted and deleted after the snapshot was never in it.
            if (_graph.GetState(label) == HnswLabelState.Live)
            {
                _graph.MarkDeleted(label);
                deletes++;
            }
        }

        // The graph must now hold exactly the database's points: anything else means the snapshot
        // does not belong to this database state (e.g. a copied or restored folder).
        var consistent = _graph.Count - _graph.DeletedCount == _byId.Count &&
                         _byLabel.Keys.All(label => _graph.GetState(label) == HnswLabelState.Live);
        if (!consistent)
        {
            throw new HnswException(HnswStatus.Corrupt, "snapshot plus replay disagrees with the database");
        }

        return (upserts, deletes);
    }

    /// <summary>
    /// Builds the graph from the in-memory points, in label order. Large rebuilds insert on every core
    /// (hnswlib's concurrent insertion, so the graph then depends on scheduling); small ones use one
    /// thread and are reproducible.
    /// </summary>
    private void Rebuild()
    {
        _graph?.Dispose();
        _graph = HnswIndex.Create(Dimensions, CapacityFor(_byId.Count), _m, _efConstruction, GraphSeed, format: _graphVectors);
        var labels = _byLabel.Keys.Order().ToArray();
        var threads = labels.Length >= ParallelRebuildThreshold ? Environment.ProcessorCount : 1;
        var batch = new float[Math.Min(labels.Length, RebuildBatch) * Dimensions];
        for (var start = 0; start < labels.Length; start += RebuildBatch)
        {
            var count = Math.Min(RebuildBatch, labels.Length - start);
            for (var i = 0; i < count; i++)
            {
                _vectors.Get(labels[start + i]).CopyTo(batch.AsSpan(i * Dimensions, Dimensions));
            }

            _graph.AddBatch(labels.AsSpan(start, count), batch.AsSpan(0, count * Dimensions), threads);
        }
    }

    private static bool SameBits(ReadOnlySpan<float> a, ReadOnlySpan<float> b) =>
        MemoryMarshal.AsBytes(a).SequenceEqual(MemoryMarshal.AsBytes(b));

    /// <summary>Grows the graph by doubling when a new label would not fit. Callers hold exclusive access.</summary>
    private void EnsureCapacity(HnswLabelState state)
    {
        if (state == HnswLabelState.Absent && _graph.Count >= _graph.Capacity)
        {
            _graph.Resize(_graph.Capacity * 2);
        }
    }

    private static long CapacityFor(long points) => Math.Max(MinCapacity, (long)BitOperations.RoundUpToPowerOf2((ulong)Math.Max(points, 1)));

    /// <summary>
    /// Runs one commit. A full disk or an I/O error becomes an <see cref="IOException"/> that says so
    /// (SQLite's own text is "database or disk is full"); SQLite has rolled the transaction back, so
    /// nothing changed, in memory or on disk, and everything committed before stays readable.
    /// </summary>
    private void Commit(Action commit)
    {
        try
        {
            commit();
            _writeError = null;
        }
        catch (Microsoft.Data.Sqlite.SqliteException ex) when (ex.SqliteErrorCode is SqliteFull or SqliteIoError)
        {
            var free = FreeBytes();
            var error = new IOException(ex.SqliteErrorCode == SqliteFull
                ? $"The index in '{_directory}' could not be written: its disk is full ({free} bytes free). Nothing was changed and what was stored before " +
                  "is intact and searchable; free some space and the writes will succeed."
                : $"The index in '{_directory}' could not be written: I/O error ({ex.Message}; {free} bytes free). Nothing was changed; what was stored before is intact.",
                ex);
            _writeError = error.Message;
            Log.WriteFailed(_logger, ex, _directory);
            throw error;
        }
    }

    private string FreeBytes()
    {
        try
        {
            return new DriveInfo(_directory).AvailableFreeSpace.ToString(CultureInfo.InvariantCulture);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return "unknown";
        }
    }

    /// <summary>
    /// Applies committed changes to memory, one point per exclusive lock so searches interleave. A
    /// failure here leaves memory behind the database: the store faults (every later call throws)
    /// and the next open replays the committed changes.
    /// </summary>
    private void ApplyCommitted(int count, Action<int> apply)
    {
        try
        {
            for (var i = 0; i < count; i++)
            {
                _lock.EnterWriteLock();
                try
                {
                    apply(i);
                }
                finally
                {
                    _lock.ExitWriteLock();
                }
            }
        }
        catch (Exception ex)
        {
            _fault = ex;
            Log.Faulted(_logger, ex, _directory);
            throw new InvalidOperationException("The change was committed but could not be applied in memory; the store must be reopened.", ex);
        }
    }

    private void ApplyUpsert(PointWrite write)
    {
        // A payload-only change (a moved file) leaves the graph alone: a replace would re-link the
        // point's neighbourhood for nothing.
        if (write.VectorChanged)
        {
            EnsureCapacity(write.IsNew ? HnswLabelState.Absent : HnswLabelState.Live);
            _graph.Add(write.Label, write.Vector, replace: !write.IsNew);
            _vectors.Set(write.Label, write.Vector);
        }

        var point = new Point(write.Id, write.Label, write.Payload);
        _byId[write.Id] = point;
        _byLabel[write.Label] = point;
    }

    private void ApplyDelete(PointDelete delete)
    {
        _graph.MarkDeleted(delete.Label);
        _vectors.Remove(delete.Label);
        _byId.Remove(delete.Id);
        _byLabel.Remove(delete.Label);
    }

    private void AfterChanges(int count)
    {
        _changesSinceSnapshot += count;
        if (_changesSinceSnapshot >= _snapshotEvery)
        {
            TrySaveSnapshot();
        }
    }

    /// <summary>
    /// Saves the graph as of <see cref="_seq"/>. Called with the writer gate held (or during open),
    /// so the graph cannot change meanwhile; searches keep running (saving only reads). A failure is
    /// logged and not thrown: the data is durable in SQLite and the next open replays more; the next
    /// attempt comes after another SnapshotEvery changes.
    /// </summary>
    private void TrySaveSnapshot()
    {
        var started = Stopwatch.GetTimestamp();
        var fileName = SnapshotMeta.SnapshotFileName(_seq);
        var path = Path.Combine(_directory, fileName);
        var temp = path + DurableFile.TempSuffix;
        try
        {
            _graph.Save(temp);
            var length = new FileInfo(temp).Length;
            var hash = HashFile(temp);
            DurableFile.Publish(temp, path);
            var meta = new SnapshotMeta(SnapshotMeta.CurrentFormat, fileName, _seq, Dimensions, _graph.Count, length, hash, _graphVectors);
            DurableFile.WriteAllBytes(Path.Combine(_directory, SnapshotMeta.FileName), StoreJson.Serialize(meta));

            // Committed: the older snapshot and the deletes it no longer needs can go.
            if (_snapshotFile is not null && _snapshotFile != fileName)
            {
                File.Delete(Path.Combine(_directory, _snapshotFile));
            }

            _snapshotFile = fileName;
            _snapshotSeq = _seq;
            _database.PruneDeletes(_seq);
            Log.SnapshotSaved(_logger, fileName, _graph.Count, length, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }
        catch (Exception ex) when (ex is IOException or HnswException or UnauthorizedAccessException or Microsoft.Data.Sqlite.SqliteException)
        {
            Log.SnapshotFailed(_logger, ex, path);
            TryDelete(temp);
        }

        _changesSinceSnapshot = 0;
    }

    /// <summary>Removes leftovers of interrupted snapshots and superseded snapshot files.</summary>
    private void DeleteStrayFiles()
    {
        foreach (var file in Directory.EnumerateFiles(_directory))
        {
            var name = Path.GetFileName(file);
            var stale = name.EndsWith(DurableFile.TempSuffix, StringComparison.Ordinal) ||
                        (name.StartsWith(SnapshotMeta.SnapshotPrefix, StringComparison.Ordinal) &&
                         name.EndsWith(SnapshotMeta.SnapshotExtension, StringComparison.Ordinal) && name != _snapshotFile);
            if (stale)
            {
                TryDelete(file);
            }
        }
    }

    private void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            Log.DeleteFailed(_logger, ex, path);
        }
    }

    private static string HashFile(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 20);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    /// <summary>A unit-length copy of <paramref name="vector"/>; throws for a wrong length, zero or non-finite values.</summary>
    private float[] Normalize(float[]? vector, string parameterName)
    {
        if (vector is null || vector.Length != Dimensions)
        {
            throw new ArgumentException($"Expected a vector of {Dimensions} dimensions, got {vector?.Length.ToString(CultureInfo.InvariantCulture) ?? "null"}.", parameterName);
        }

        // A NaN or infinity anywhere (or an overflowing sum) makes the norm non-finite.
        var norm = TensorPrimitives.Norm(vector);
        if (!float.IsFinite(norm) || norm == 0)
        {
            throw new ArgumentException("Vectors must be finite and non-zero.", parameterName);
        }

        var result = new float[vector.Length];
        TensorPrimitives.Divide(vector, norm, result);
        return result;
    }

    private void ThrowIfUnusable()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_fault is not null)
        {
            throw new InvalidOperationException("The store faulted after a committed change could not be applied in memory; reopen it.", _fault);
        }
    }

    private sealed record Point(ImageId Id, long Label, ImagePayload Payload);

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Opened vector store {Directory} for {Model}: {Points} points, snapshot seq {SnapshotSeq}, replayed {ReplayedUpserts} upserts and {ReplayedDeletes} deletes, rebuild: {RebuildReason}, in {ElapsedMs:F0} ms")]
        public static partial void Opened(ILogger logger, string directory, string model, long points, long snapshotSeq, int replayedUpserts, int replayedDeletes, string rebuildReason, double elapsedMs);

        [LoggerMessage(2, LogLevel.Warning, "Rebuilding the HNSW graph of {Directory} from {Points} points: {Reason}")]
        public static partial void Rebuilding(ILogger logger, string directory, int points, string reason);

        [LoggerMessage(3, LogLevel.Information, "Saved HNSW snapshot {File}: {Elements} elements, {Bytes} bytes in {ElapsedMs:F0} ms")]
        public static partial void SnapshotSaved(ILogger logger, string file, long elements, long bytes, double elapsedMs);

        [LoggerMessage(4, LogLevel.Warning, "Could not save HNSW snapshot {Path}; the next open replays from an older one")]
        public static partial void SnapshotFailed(ILogger logger, Exception exception, string path);

        [LoggerMessage(5, LogLevel.Error, "Vector store {Directory} faulted: a committed change could not be applied in memory")]
        public static partial void Faulted(ILogger logger, Exception exception, string directory);

        [LoggerMessage(6, LogLevel.Warning, "Could not checkpoint the WAL of {Directory}")]
        public static partial void CheckpointFailed(ILogger logger, Exception exception, string directory);

        [LoggerMessage(7, LogLevel.Warning, "Could not delete {Path}")]
        public static partial void DeleteFailed(ILogger logger, Exception exception, string path);

        [LoggerMessage(8, LogLevel.Error, "Could not write to the vector store {Directory} (disk full or I/O error); nothing was changed, reads go on")]
        public static partial void WriteFailed(ILogger logger, Exception exception, string directory);
    }
}
