namespace ImageSearch.Qdrant;

/// <summary>
/// Restricts a <see cref="QdrantVectorStore.SearchAsync(float[], Core.VectorQuery, QdrantPathFilter?, CancellationToken)"/>
/// by the stored path (exact, case-sensitive matches on the keyword index of <c>path</c>). Qdrant has no
/// prefix match on keyword fields, so "everything under a folder" is not expressible here.
/// </summary>
public sealed record QdrantPathFilter
{
    /// <summary>Only points whose path is one of these; null = no restriction, empty = nothing matches.</summary>
    public IReadOnlyCollection<string>? AnyOf { get; init; }

    /// <summary>No point whose path is one of these (e.g. leave out the query image itself); null or empty = none excluded.</summary>
    public IReadOnlyCollection<string>? NoneOf { get; init; }
}
