using System.ComponentModel.DataAnnotations;

namespace ImageSearch.Pipeline;

/// <summary>Query-side settings. Section "Search".</summary>
public sealed class SearchOptions
{
    public const string Section = "Search";

    /// <summary>
    /// Most query images one model call takes when queries arrive together (see
    /// <see cref="QueryEmbeddingQueue"/>); a single request with more images still runs whole.
    /// </summary>
    [Range(1, 256)]
    public int MaxEmbeddingBatch { get; set; } = 8;
}
