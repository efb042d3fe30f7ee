using ImageSearch.Core;

namespace ImageSearch.Qdrant.Tests;

/// <summary>Stores wired to a <see cref="QdrantApiDouble"/>.</summary>
internal static class Doubles
{
    public const int Dimensions = 16;

    public static readonly EmbeddingModelInfo Model = new("test", "1", Dimensions, 8, 8);

    /// <summary>The collection a store for <see cref="Model"/> uses by default.</summary>
    public static readonly string Collection = QdrantOptions.DefaultCollectionName(Model);

    public static QdrantVectorStore Open(QdrantApiDouble qdrant, Action<QdrantOptions>? configure = null, EmbeddingModelInfo? model = null)
    {
        var options = new QdrantOptions { Url = qdrant.BaseAddress.ToString() };
        configure?.Invoke(options);
        return new QdrantVectorStore(options, model ?? Model, qdrant);
    }

    /// <summary>Every request so far, as "METHOD /path?query".</summary>
    public static List<string> Calls(this QdrantApiDouble qdrant) => qdrant.Requests.Select(r => r.ToString()).ToList();
}
