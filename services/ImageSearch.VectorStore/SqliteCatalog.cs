using System.Globalization;
using ImageSearch.Core;
using Microsoft.Data.Sqlite;

namespace ImageSearch.VectorStore;

/// <summary>
/// <see cref="ICatalog"/> in its own SQLite file (catalog.db, normally next to the vector store's files).
/// </summary>
/// <remarks>
/// <para>
/// Own file rather than the store's points.db: SQLite allows one writer per database file, and the
/// catalog is written once per file scanned while the store commits batches of vectors, so sharing a
/// file would make each wait on the other. The ports are separate anyway (no transaction spans both),
/// and a catalog can be dropped and rescanned without touching the vectors. It lives in the store's
/// folder because its "indexed" states describe that index: a new model means a new folder, new
/// vectors and a fresh catalog.
/// </para>
/// <para>
/// Durability: WAL with synchronous=NORMAL. A process crash loses nothing; a power loss may lose the
/// last few updates, which only makes the next scan redo those files (indexing is idempotent by
/// content id). Path keys are compared byte-wise (case-sensitive).
/// Thread-safe: each call uses its own pooled connection; writes are short IMMEDIATE transactions.
/// </para>
/// </remarks>
public sealed class SqliteCatalog : ICatalog, IDisposable
{
    /// <summary>File name used when the catalog sits in a store folder.</summary>
    public const string DefaultFileName = "catalog.db";

    private const int SchemaVersion = 1;
    private const string Indexed = "indexed";
    private const string Failed = "failed";

    private readonly string _connectionString;
    private readonly TimeProvider _time;

    /// <summary>Opens or creates the catalog database at <paramref name="databasePath"/> (its folder is created).</summary>
    /// <param name="databasePath">The SQLite file.</param>
    /// <param name="timeProvider">Clock for <see cref="CatalogEntry.UpdatedAt"/>; system clock by default.</param>
    public SqliteCatalog(string databasePath, TimeProvider? timeProvider = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(databasePath);
        var fullPath = Path.GetFullPath(databasePath);
        Directory.CreateDirectory(Path.GetDirectoryName(fullPath)!);
        _time = timeProvider ?? TimeProvider.System;
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = fullPath,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Pooling = true,
        }.ToString();

        using var connection = Open();
        using (var mode = connection.CreateCommand())
        {
            // Persistent in the file; set once here rather than per connection.
            mode.CommandText = "PRAGMA journal_mode=WAL;";
            mode.ExecuteNonQuery();
        }

        using var transaction = connection.BeginTransaction();
        var version = Convert.ToInt32(Scalar(connection, transaction, "PRAGMA user_version;"), CultureInfo.InvariantCulture);
        if (version > SchemaVersion)
        {
            throw new InvalidOperationException($"'{fullPath}' has schema version {version}; this build understands up to {SchemaVersion}.");
        }

        if (version < SchemaVersion)
        {
            using var create = connection.CreateCommand();
            create.Transaction = transaction;
            create.CommandText = $"""
                CREATE TABLE files(
                    path TEXT NOT NULL PRIMARY KEY,
                    image_id TEXT NULL,
                    state TEXT NOT NULL CHECK (state IN ('{Indexed}', '{Failed}')),
                    reason TEXT NULL,
                    size_bytes INTEGER NOT NULL,
                    modified_at TEXT NOT NULL,
                    updated_at TEXT NOT NULL);
                CREATE INDEX files_image_id ON files(image_id) WHERE image_id IS NOT NULL;
                CREATE INDEX files_state ON files(state);
                PRAGMA user_version = {SchemaVersion};
                """;
            create.ExecuteNonQuery();
        }

        // Added after schema version 1 shipped: created on every open (IF NOT EXISTS) rather than by
        // a version bump, so an older build can still open a catalog this one has touched.
        using (var recent = connection.CreateCommand())
        {
            recent.Transaction = transaction;
            recent.CommandText = "CREATE INDEX IF NOT EXISTS files_recent ON files(state, updated_at);";
            recent.ExecuteNonQuery();
        }

        transaction.Commit();
    }

    public Task<ImageId?> SetIndexedAsync(string path, ImageId id, long sizeBytes, DateTimeOffset modifiedAt, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (id.Value is null)
        {
            throw new ArgumentException("The id is empty.", nameof(id));
        }

        cancellationToken.ThrowIfCancellationRequested();
        var previous = Put(path, id, Indexed, null, sizeBytes, modifiedAt);
        return Task.FromResult(previous == id ? null : previous);
    }

    public Task<ImageId?> SetFailedAsync(string path, string reason, long sizeBytes, DateTimeOffset modifiedAt, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(reason);
        cancellationToken.ThrowIfCancellationRequested();
        return Task.FromResult(Put(path, null, Failed, reason, sizeBytes, modifiedAt));
    }

    public Task<ImageId?> RemoveAsync(string path, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(path);
        cancellationToken.ThrowIfCancellationRequested();
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = "DELETE FROM files WHERE path = $path RETURNING image_id;";
        command.Parameters.AddWithValue("$path", path);
        return Task.FromResult(ParseId(command.ExecuteScalar()));
    }

    public Task<CatalogEntry?> GetAsync(string path, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(path);
        cancellationToken.ThrowIfCancellationRequested();
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT path, image_id, state, reason, size_bytes, modified_at, updated_at FROM files WHERE path = $path;";
        command.Parameters.AddWithValue("$path", path);
        using var reader = command.ExecuteReader();
        return Task.FromResult(reader.Read() ? ReadEntry(reader) : null);
    }

    public Task<int> CountPathsAsync(ImageId id, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (id.Value is null)
        {
            return Task.FromResult(0);
        }

        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT COUNT(*) FROM files WHERE image_id = $id;";
        command.Parameters.AddWithValue("$id", id.Value);
        return Task.FromResult(Convert.ToInt32(command.ExecuteScalar(), CultureInfo.InvariantCulture));
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<string>> ListPathsAsync(ImageId id, int limit, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(limit);
        var paths = new List<string>();
        if (id.Value is null)
        {
            return Task.FromResult<IReadOnlyList<string>>(paths);
        }

        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT path FROM files WHERE image_id = $id ORDER BY path LIMIT $limit;";
        command.Parameters.AddWithValue("$id", id.Value);
        command.Parameters.AddWithValue("$limit", limit);
        using var reader = command.ExecuteReader();
        while (reader.Read())
        {
            paths.Add(reader.GetString(0));
        }

        return Task.FromResult<IReadOnlyList<string>>(paths);
    }

    /// <inheritdoc />
    /// <remarks>The first such path in byte order, so the answer is stable.</remarks>
    public Task<string?> FindPathAsync(ImageId id, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (id.Value is null)
        {
            return Task.FromResult<string?>(null);
        }

        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT MIN(path) FROM files WHERE image_id = $id;";
        command.Parameters.AddWithValue("$id", id.Value);
        return Task.FromResult(command.ExecuteScalar() as string);
    }

    /// <inheritdoc />
    /// <remarks>Ordered by path; <paramref name="state"/> null lists every file.</remarks>
    public Task<IReadOnlyList<CatalogEntry>> ListAsync(FileState? state, int limit, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        cancellationToken.ThrowIfCancellationRequested();
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = """
            SELECT path, image_id, state, reason, size_bytes, modified_at, updated_at FROM files
            WHERE $state IS NULL OR state = $state ORDER BY path LIMIT $limit;
            """;
        command.Parameters.AddWithValue("$state", state is { } s ? StateName(s) : DBNull.Value);
        command.Parameters.AddWithValue("$limit", limit);
        return Task.FromResult(ReadEntries(command));
    }

    /// <inheritdoc />
    /// <remarks>Ties in path order. Times are stored as UTC round-trip text, so text order is time order.</remarks>
    public Task<IReadOnlyList<CatalogEntry>> ListRecentAsync(int limit, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        cancellationToken.ThrowIfCancellationRequested();
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"""
            SELECT path, image_id, state, reason, size_bytes, modified_at, updated_at FROM files
            WHERE state = '{Indexed}' ORDER BY updated_at DESC, path LIMIT $limit;
            """;
        command.Parameters.AddWithValue("$limit", limit);
        return Task.FromResult(ReadEntries(command));
    }

    public Task<IReadOnlyList<CatalogEntry>> ListPageAsync(string? afterPath, int limit, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        cancellationToken.ThrowIfCancellationRequested();
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = """
            SELECT path, image_id, state, reason, size_bytes, modified_at, updated_at FROM files
            WHERE $after IS NULL OR path > $after ORDER BY path LIMIT $limit;
            """;
        command.Parameters.AddWithValue("$after", (object?)afterPath ?? DBNull.Value);
        command.Parameters.AddWithValue("$limit", limit);
        return Task.FromResult(ReadEntries(command));
    }

    private static IReadOnlyList<CatalogEntry> ReadEntries(SqliteCommand command)
    {
        using var reader = command.ExecuteReader();
        var entries = new List<CatalogEntry>();
        while (reader.Read())
        {
            entries.Add(ReadEntry(reader));
        }

        return entries;
    }

    public Task<CatalogCounts> CountsAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT COUNT(*), COUNT(*) FILTER (WHERE state = '{Indexed}'), COUNT(*) FILTER (WHERE state = '{Failed}') FROM files;";
        using var reader = command.ExecuteReader();
        reader.Read();
        return Task.FromResult(new CatalogCounts(reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2)));
    }

    /// <summary>Closes the pooled connections, releasing the file.</summary>
    public void Dispose()
    {
        using var connection = new SqliteConnection(_connectionString);
        SqliteConnection.ClearPool(connection);
    }

    private ImageId? Put(string path, ImageId? id, string state, string? reason, long sizeBytes, DateTimeOffset modifiedAt)
    {
        using var connection = Open();
        // IMMEDIATE (the default here) takes the write lock up front, so reading the previous id and
        // replacing the row cannot interleave with another writer.
        using var transaction = connection.BeginTransaction();
        ImageId? previous;
        using (var read = connection.CreateCommand())
        {
            read.Transaction = transaction;
            read.CommandText = "SELECT image_id FROM files WHERE path = $path;";
            read.Parameters.AddWithValue("$path", path);
            previous = ParseId(read.ExecuteScalar());
        }

        using (var write = connection.CreateCommand())
        {
            write.Transaction = transaction;
            write.CommandText = """
                INSERT INTO files(path, image_id, state, reason, size_bytes, modified_at, updated_at)
                VALUES ($path, $id, $state, $reason, $size, $modified, $updated)
                ON CONFLICT(path) DO UPDATE SET image_id = excluded.image_id, state = excluded.state, reason = excluded.reason,
                    size_bytes = excluded.size_bytes, modified_at = excluded.modified_at, updated_at = excluded.updated_at;
                """;
            write.Parameters.AddWithValue("$path", path);
            write.Parameters.AddWithValue("$id", id is { } value ? value.Value : DBNull.Value);
            write.Parameters.AddWithValue("$state", state);
            write.Parameters.AddWithValue("$reason", (object?)reason ?? DBNull.Value);
            write.Parameters.AddWithValue("$size", sizeBytes);
            write.Parameters.AddWithValue("$modified", FormatTime(modifiedAt));
            write.Parameters.AddWithValue("$updated", FormatTime(_time.GetUtcNow()));
            write.ExecuteNonQuery();
        }

        transaction.Commit();
        return previous;
    }

    private SqliteConnection Open()
    {
        var connection = new SqliteConnection(_connectionString);
        try
        {
            connection.Open();
            using var command = connection.CreateCommand();
            // Per connection (pooled connections keep it, but a new one starts at FULL).
            command.CommandText = "PRAGMA synchronous=NORMAL;";
            command.ExecuteNonQuery();
            return connection;
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    private static object? Scalar(SqliteConnection connection, SqliteTransaction transaction, string sql)
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = sql;
        return command.ExecuteScalar();
    }

    private static CatalogEntry ReadEntry(SqliteDataReader reader) => new(
        reader.GetString(0),
        reader.IsDBNull(1) ? null : ImageId.Parse(reader.GetString(1)),
        reader.GetString(2) == Indexed ? FileState.Indexed : FileState.Failed,
        reader.IsDBNull(3) ? null : reader.GetString(3),
        reader.GetInt64(4),
        ParseTime(reader.GetString(5)),
        ParseTime(reader.GetString(6)));

    private static ImageId? ParseId(object? value) => value is string text ? ImageId.Parse(text) : null;

    private static string StateName(FileState state) => state switch
    {
        FileState.Indexed => Indexed,
        FileState.Failed => Failed,
        _ => throw new ArgumentOutOfRangeException(nameof(state), state, null),
    };

    // Round-trip format: keeps the offset and all 100 ns ticks, so change detection can compare exactly.
    private static string FormatTime(DateTimeOffset time) => time.ToString("O", CultureInfo.InvariantCulture);

    private static DateTimeOffset ParseTime(string text) => DateTimeOffset.ParseExact(text, "O", CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind);
}
