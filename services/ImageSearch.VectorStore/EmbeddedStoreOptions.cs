using Microsoft.Extensions.Options;

namespace ImageSearch.VectorStore;

/// <summary>Settings of an <see cref="EmbeddedVectorStore"/>.</summary>
public sealed class EmbeddedStoreOptions
{
    /// <summary>Folder of the index (created if missing). One folder per embedding model.</summary>
    public string Directory { get; set; } = "";

    /// <summary>HNSW links per node (level 0 keeps 2*M). 16 suits 128-1024 dimensions; memory per point grows by 8*M bytes.</summary>
    public int M { get; set; } = 16;

    /// <summary>HNSW beam width while inserting: higher builds a better graph, slower.</summary>
    public int EfConstruction { get; set; } = 200;

    /// <summary>
    /// How the HNSW graph stores vectors. <see cref="HnswVectorFormat.Float32"/> (default) or
    /// <see cref="HnswVectorFormat.Int8"/>: one byte per dimension instead of four in the graph,
    /// whose search then ranks by approximate distances; the store rescores the whole beam with
    /// the float vectors it keeps for exact search anyway, so scores stay exact cosines. Changing
    /// it rebuilds the graph on the next open.
    /// </summary>
    public HnswVectorFormat GraphVectors { get; set; } = HnswVectorFormat.Float32;

    /// <summary>Default HNSW beam width while searching (<see cref="Core.VectorQuery.Ef"/> 0 means this).</summary>
    public int EfSearch { get; set; } = 64;

    /// <summary>
    /// Save the HNSW snapshot after this many changes (upserted or deleted points). Reopening replays
    /// the changes since the last snapshot, about as costly per change as an insert; each snapshot
    /// writes the whole graph (about (Dimensions*4 + 8*M + 16) bytes per point), so raise this for
    /// very large collections.
    /// </summary>
    public int SnapshotEvery { get; set; } = 1000;

    /// <summary>
    /// Below this many points every search is exact (a scan of the in-memory vectors): as fast as the
    /// graph at that size, and perfect. 0 always uses the graph unless a query asks for exact.
    /// </summary>
    public int ExactThreshold { get; set; } = 2000;

    /// <summary>Problems with the settings; empty when valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (string.IsNullOrWhiteSpace(Directory))
        {
            errors.Add("Directory is required.");
        }

        Check(errors, M, 2, 256, nameof(M));
        Check(errors, EfConstruction, 1, 10_000, nameof(EfConstruction));
        Check(errors, EfSearch, 1, 10_000, nameof(EfSearch));
        Check(errors, SnapshotEvery, 1, int.MaxValue, nameof(SnapshotEvery));
        Check(errors, ExactThreshold, 0, int.MaxValue, nameof(ExactThreshold));
        if (!Enum.IsDefined(GraphVectors))
        {
            errors.Add($"{nameof(GraphVectors)} must be {string.Join(" or ", Enum.GetNames<HnswVectorFormat>())} (was {GraphVectors}).");
        }

        return errors;
    }

    internal void ThrowIfInvalid()
    {
        var errors = Validate();
        if (errors.Count > 0)
        {
            throw new OptionsValidationException(nameof(EmbeddedStoreOptions), typeof(EmbeddedStoreOptions), errors);
        }
    }

    private static void Check(List<string> errors, int value, int min, int max, string name)
    {
        if (value < min || value > max)
        {
            errors.Add($"{name} must be in {min}..{max} (was {value}).");
        }
    }
}

/// <summary>Runs <see cref="EmbeddedStoreOptions.Validate"/> for the options pipeline (and ValidateOnStart).</summary>
internal sealed class EmbeddedStoreOptionsValidator : IValidateOptions<EmbeddedStoreOptions>
{
    public ValidateOptionsResult Validate(string? name, EmbeddedStoreOptions options)
    {
        var errors = options.Validate();
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
