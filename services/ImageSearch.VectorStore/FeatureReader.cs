using System.Collections.Concurrent;
using ImageSearch.Core;
using Microsoft.Data.Sqlite;

namespace ImageSearch.VectorStore;

/// <summary>
/// Reads local feature blobs from points.db on read-only connections of its own (WAL: readers see
/// the last commit and never wait for the writer), kept in a small pool so a query does not pay for
/// opening one. Thread-safe; disposed by the store under its exclusive lock.
/// </summary>
internal sealed class FeatureReader(string path) : IDisposable
{
    private const int MaxIdle = 4;

    private readonly ConcurrentBag<SqliteConnection> _idle = [];
    private readonly string _connectionString = new SqliteConnectionStringBuilder
    {
        DataSource = path,
        Mode = SqliteOpenMode.ReadOnly,
        Pooling = false,
    }.ToString();

    private bool _disposed;

    public Dictionary<ImageId, byte[]> Read(IReadOnlyList<ImageId> ids)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var result = new Dictionary<ImageId, byte[]>(ids.Count);
        if (ids.Count == 0)
        {
            return result;
        }

        if (!_idle.TryTake(out var connection))
        {
            connection = new SqliteConnection(_connectionString);
            connection.Open();
        }

        try
        {
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT data FROM features WHERE id = $id;";
            var id = command.Parameters.Add("$id", SqliteType.Text);
            foreach (var wanted in ids.Distinct())
            {
                if (wanted.Value is null)
                {
                    continue;
                }

                id.Value = wanted.Value;
                if (command.ExecuteScalar() is byte[] blob)
                {
                    result[wanted] = blob;
                }
            }
        }
        catch
        {
            connection.Dispose();
            throw;
        }

        if (_idle.Count < MaxIdle)
        {
            _idle.Add(connection);
        }
        else
        {
            connection.Dispose();
        }

        return result;
    }

    public void Dispose()
    {
        _disposed = true;
        while (_idle.TryTake(out var connection))
        {
            connection.Dispose();
        }
    }
}
