using System.Globalization;
using System.Runtime.InteropServices;
using ImageSearch.Core;
using Microsoft.Data.Sqlite;

namespace ImageSearch.VectorStore;

/// <summary>A point as stored, without its vector.</summary>
internal sealed record StoredPoint(ImageId Id, long Label, long Seq, ImagePayload Payload);

/// <summary>
/// An upsert about to be committed: the point, its label and the seq it gets; whether the label is
/// new, and whether the vector differs from the stored one (false: only the payload changed).
/// </summary>
internal sealed record PointWrite(ImageId Id, long Label, long Seq, float[] Vector, ImagePayload Payload, bool IsNew, bool VectorChanged, byte[]? LocalFeatures = null);

/// <summary>A delete about to be committed.</summary>
internal sealed record PointDelete(ImageId Id, long Label, long Seq);

/// <summary>
/// The store's SQLite database (points.db), the source of truth: one row per live point, a log of
/// deletes, and two counters (last seq, next label) updated in the same transaction as the rows;
/// since schema 2 also each point's local features (a blob per point, read on demand for
/// re-ranking, never held in memory), written and deleted in the same transactions as the points.
/// </summary>
/// <remarks>
/// Durability: WAL journal with synchronous=FULL, so a transaction is on disk (WAL fsynced) when
/// Commit returns and survives a process crash, an OS crash or a power loss. NORMAL would be about
/// as fast here (one fsync per batch either way matters little next to the HNSW insert) but could
/// lose the last commits on power loss, which the IVectorStore contract does not allow.
/// Not thread-safe: the store uses it from one writer at a time (and at open).
/// Vectors are stored as raw little-endian float32 blobs (dimensions * 4 bytes).
/// </remarks>
internal sealed class PointDatabase : IDisposable
{
    public const string FileName = "points.db";
    private const int SchemaVersion = 2;

    private readonly SqliteConnection _connection;

    /// <summary>Whether the database at <paramref name="path"/> exists and holds a point; read-only, and false for a file that is not one.</summary>
    public static bool HoldsPoints(string path)
    {
        if (!File.Exists(path))
        {
            return false;
        }

        try
        {
            using var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Mode = SqliteOpenMode.ReadOnly, Pooling = false }.ToString());
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT EXISTS(SELECT 1 FROM points);";
            return Convert.ToInt64(command.ExecuteScalar(), CultureInfo.InvariantCulture) != 0;
        }
        catch (SqliteException)
        {
            return false;
        }
    }

    public PointDatabase(string path)
    {
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("Vector blobs are little-endian float32.");
        }

        // Pooling off: Dispose must really close the file (the folder may be copied or reopened next).
        _connection = new SqliteConnection(new SqliteConnectionStringBuilder
        {
            DataSource = path,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Pooling = false,
        }.ToString());
        try
        {
            _connection.Open();
            Execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;");
            var version = Convert.ToInt32(Scalar("PRAGMA user_version;"), CultureInfo.InvariantCulture);
            if (version > SchemaVersion)
            {
                throw new InvalidOperationException($"'{path}' has schema version {version}; this build understands up to {SchemaVersion}.");
            }

            if (version < 1)
            {
                using var transaction = _connection.BeginTransaction();
                Execute("""
                    CREATE TABLE points(
                        id TEXT NOT NULL PRIMARY KEY,
                        label INTEGER NOT NULL UNIQUE,
                        seq INTEGER NOT NULL,
                        vector BLOB NOT NULL,
                        path TEXT NOT NULL,
                        size_bytes INTEGER NOT NULL,
                        width INTEGER NOT NULL,
                        height INTEGER NOT NULL,
                        content_hash TEXT NOT NULL,
                        added_at TEXT NOT NULL);
                    CREATE TABLE deletes(
                        seq INTEGER NOT NULL PRIMARY KEY,
                        label INTEGER NOT NULL);
                    CREATE TABLE counters(
                        name TEXT NOT NULL PRIMARY KEY,
                        value INTEGER NOT NULL) WITHOUT ROWID;
                    INSERT INTO counters(name, value) VALUES ('seq', 0), ('next_label', 0);
                    PRAGMA user_version = 1;
                    """, transaction);
                transaction.Commit();
            }

            if (version < 2)
            {
                // Schema 2: local features. An index made before keeps its points; they have no
                // features until their images are indexed again (re-ranking leaves them in place).
                using var transaction = _connection.BeginTransaction();
                Execute("""
                    CREATE TABLE features(
                        id TEXT NOT NULL PRIMARY KEY,
                        data BLOB NOT NULL);
                    PRAGMA user_version = 2;
                    """, transaction);
                transaction.Commit();
            }
        }
        catch
        {
            _connection.Dispose();
            throw;
        }
    }

    /// <summary>Last seq handed out and next label to hand out.</summary>
    public (long Seq, long NextLabel) ReadCounters()
    {
        using var command = _connection.CreateCommand();
        command.CommandText = "SELECT (SELECT value FROM counters WHERE name = 'seq'), (SELECT value FROM counters WHERE name = 'next_label');";
        using var reader = command.ExecuteReader();
        reader.Read();
        return (reader.GetInt64(0), reader.GetInt64(1));
    }

    /// <summary>Streams every point in label order; the vector span is only valid during the callback.</summary>
    public void ReadPoints(int dimensions, Action<StoredPoint, ReadOnlySpan<float>> onPoint)
    {
        var bytes = new byte[dimensions * sizeof(float)];
        using var command = _connection.CreateCommand();
        command.CommandText = "SELECT id, label, seq, vector, path, size_bytes, width, height, content_hash, added_at FROM points ORDER BY label;";
        using var reader = command.ExecuteReader();
        while (reader.Read())
        {
            var id = reader.GetString(0);
            var length = reader.GetBytes(3, 0, null, 0, 0);
            if (length != bytes.Length)
            {
                throw new InvalidDataException($"Point {id} has a {length}-byte vector; {dimensions} dimensions need {bytes.Length}.");
            }

            reader.GetBytes(3, 0, bytes, 0, bytes.Length);
            var payload = new ImagePayload(
                reader.GetString(4),
                reader.GetInt64(5),
                reader.GetInt32(6),
                reader.GetInt32(7),
                reader.GetString(8),
                DateTimeOffset.ParseExact(reader.GetString(9), "O", CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind));
            onPoint(new StoredPoint(ImageId.Parse(id), reader.GetInt64(1), reader.GetInt64(2), payload), MemoryMarshal.Cast<byte, float>(bytes));
        }
    }

    /// <summary>Ids of the points stored with local features.</summary>
    public HashSet<ImageId> ReadFeatureIds()
    {
        using var command = _connection.CreateCommand();
        command.CommandText = "SELECT id FROM features;";
        using var reader = command.ExecuteReader();
        var ids = new HashSet<ImageId>();
        while (reader.Read())
        {
            ids.Add(ImageId.Parse(reader.GetString(0)));
        }

        return ids;
    }

    /// <summary>Labels deleted after <paramref name="seq"/>.</summary>
    public List<long> ReadDeletedLabelsSince(long seq)
    {
        using var command = _connection.CreateCommand();
        command.CommandText = "SELECT label FROM deletes WHERE seq > $seq ORDER BY seq;";
        command.Parameters.AddWithValue("$seq", seq);
        using var reader = command.ExecuteReader();
        var labels = new List<long>();
        while (reader.Read())
        {
            labels.Add(reader.GetInt64(0));
        }

        return labels;
    }

    /// <summary>Writes the points and the counters in one transaction; durable when it returns.</summary>
    public void CommitUpserts(IReadOnlyList<PointWrite> writes, long lastSeq, long nextLabel)
    {
        using var transaction = _connection.BeginTransaction();
        using var command = _connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = """
            INSERT INTO points(id, label, seq, vector, path, size_bytes, width, height, content_hash, added_at)
            VALUES ($id, $label, $seq, $vector, $path, $size, $width, $height, $hash, $added)
            ON CONFLICT(id) DO UPDATE SET
                seq = excluded.seq, vector = excluded.vector, path = excluded.path, size_bytes = excluded.size_bytes,
                width = excluded.width, height = excluded.height, content_hash = excluded.content_hash, added_at = excluded.added_at;
            """;
        var id = command.Parameters.Add("$id", SqliteType.Text);
        var label = command.Parameters.Add("$label", SqliteType.Integer);
        var seq = command.Parameters.Add("$seq", SqliteType.Integer);
        var vector = command.Parameters.Add("$vector", SqliteType.Blob);
        var path = command.Parameters.Add("$path", SqliteType.Text);
        var size = command.Parameters.Add("$size", SqliteType.Integer);
        var width = command.Parameters.Add("$width", SqliteType.Integer);
        var height = command.Parameters.Add("$height", SqliteType.Integer);
        var hash = command.Parameters.Add("$hash", SqliteType.Text);
        var added = command.Parameters.Add("$added", SqliteType.Text);
        foreach (var write in writes)
        {
            id.Value = write.Id.Value;
            label.Value = write.Label;
            seq.Value = write.Seq;
            vector.Value = MemoryMarshal.AsBytes(write.Vector.AsSpan()).ToArray();
            path.Value = write.Payload.Path;
            size.Value = write.Payload.SizeBytes;
            width.Value = write.Payload.Width;
            height.Value = write.Payload.Height;
            hash.Value = write.Payload.ContentHash;
            added.Value = write.Payload.AddedAt.ToString("O", CultureInfo.InvariantCulture);
            command.ExecuteNonQuery();
        }

        using var features = _connection.CreateCommand();
        features.Transaction = transaction;
        features.CommandText = "INSERT INTO features(id, data) VALUES ($id, $data) ON CONFLICT(id) DO UPDATE SET data = excluded.data;";
        var featureId = features.Parameters.Add("$id", SqliteType.Text);
        var data = features.Parameters.Add("$data", SqliteType.Blob);
        foreach (var write in writes)
        {
            if (write.LocalFeatures is { } blob)
            {
                featureId.Value = write.Id.Value;
                data.Value = blob;
                features.ExecuteNonQuery();
            }
        }

        SetCounter(transaction, "seq", lastSeq);
        SetCounter(transaction, "next_label", nextLabel);
        transaction.Commit();
    }

    /// <summary>Removes the points, logs their labels and updates the seq counter in one transaction.</summary>
    public void CommitDeletes(IReadOnlyList<PointDelete> deletes, long lastSeq)
    {
        using var transaction = _connection.BeginTransaction();
        using var remove = _connection.CreateCommand();
        remove.Transaction = transaction;
        remove.CommandText = "DELETE FROM points WHERE id = $id; DELETE FROM features WHERE id = $id;";
        var id = remove.Parameters.Add("$id", SqliteType.Text);
        using var log = _connection.CreateCommand();
        log.Transaction = transaction;
        log.CommandText = "INSERT INTO deletes(seq, label) VALUES ($seq, $label);";
        var seq = log.Parameters.Add("$seq", SqliteType.Integer);
        var label = log.Parameters.Add("$label", SqliteType.Integer);
        foreach (var delete in deletes)
        {
            id.Value = delete.Id.Value;
            remove.ExecuteNonQuery();
            seq.Value = delete.Seq;
            label.Value = delete.Label;
            log.ExecuteNonQuery();
        }

        SetCounter(transaction, "seq", lastSeq);
        transaction.Commit();
    }

    /// <summary>Drops log entries a snapshot at <paramref name="seq"/> already reflects (a rebuild never needs them).</summary>
    public void PruneDeletes(long seq)
    {
        using var command = _connection.CreateCommand();
        command.CommandText = "DELETE FROM deletes WHERE seq <= $seq;";
        command.Parameters.AddWithValue("$seq", seq);
        command.ExecuteNonQuery();
    }

    /// <summary>Folds the WAL into the database file and truncates it (on close, so the folder is compact).</summary>
    public void Checkpoint() => Execute("PRAGMA wal_checkpoint(TRUNCATE);");

    public void Dispose() => _connection.Dispose();

    private void SetCounter(SqliteTransaction transaction, string name, long value)
    {
        using var command = _connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = "UPDATE counters SET value = $value WHERE name = $name;";
        command.Parameters.AddWithValue("$name", name);
        command.Parameters.AddWithValue("$value", value);
        command.ExecuteNonQuery();
    }

    private void Execute(string sql, SqliteTransaction? transaction = null)
    {
        using var command = _connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    private object? Scalar(string sql)
    {
        using var command = _connection.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteScalar();
    }
}
