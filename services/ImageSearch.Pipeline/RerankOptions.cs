using System.ComponentModel.DataAnnotations;

namespace ImageSearch.Pipeline;

/// <summary>
/// Re-ranking of a query's nearest neighbours by local features (SIFT matches that agree on one
/// similarity transform). Section "Rerank". Measured in docs/QUALITY.md.
/// </summary>
public sealed class RerankOptions
{
    public const string Section = "Rerank";

    /// <summary>Extract local features at ingestion and re-rank queries with them (queries can still opt out).</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>How many nearest neighbours are verified.</summary>
    [Range(1, 1000)]
    public int Depth { get; set; } = 100;

    /// <summary>Candidates with at least this many inliers move ahead of the rest, by inlier count.</summary>
    [Range(2, 1000)]
    public int MinInliers { get; set; } = 8;
}
