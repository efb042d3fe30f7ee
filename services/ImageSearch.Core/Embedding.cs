namespace ImageSearch.Core;

/// <summary>Identity of an embedding model; vectors from different models never share an index.</summary>
public sealed record EmbeddingModelInfo(string Name, string Version, int Dimensions, int InputWidth, int InputHeight)
{
    /// <summary>"name@version", recorded in an index's manifest.</summary>
    public string Key => $"{Name}@{Version}";
}

/// <summary>
/// Turns prepared images into unit-length embedding vectors (centred, optionally whitened, then
/// L2-normalised), so that cosine similarity is a dot product. Implementations are thread-safe.
/// </summary>
public interface IEmbedder : IDisposable
{
    EmbeddingModelInfo Model { get; }

    /// <summary>Which execution provider runs the model ("cpu", "cuda").</summary>
    string Device { get; }

    /// <summary>Embeds a batch; every image must be <see cref="EmbeddingModelInfo.InputWidth"/> x <see cref="EmbeddingModelInfo.InputHeight"/>.</summary>
    float[][] Embed(IReadOnlyList<RgbImage> images);
}
