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
    /// <remarks>One image runs as a query (<see cref="EmbeddingWorkload.Latency"/>), several as ingestion (<see cref="EmbeddingWorkload.Throughput"/>).</remarks>
    float[][] Embed(IReadOnlyList<RgbImage> images);

    /// <summary>Embeds a batch the way <paramref name="workload"/> wants it run (implementations without the distinction ignore it).</summary>
    float[][] Embed(IReadOnlyList<RgbImage> images, EmbeddingWorkload workload) => Embed(images);
}

/// <summary>How a call to <see cref="IEmbedder.Embed(IReadOnlyList{RgbImage}, EmbeddingWorkload)"/> should use the cores.</summary>
public enum EmbeddingWorkload
{
    /// <summary>Finish this call soon: spread each operator over every core (queries).</summary>
    Latency,

    /// <summary>Most images per second while other calls and decoders share the cores: few threads per call (ingestion).</summary>
    Throughput,
}
