using ImageSearch.Core;

namespace ImageSearch.VectorStore.Tests;

/// <summary>The contract with default options: these small collections are searched exactly.</summary>
public sealed class EmbeddedVectorStoreContractTests : VectorStoreContractTests
{
    private readonly TempDirectory _folder = new();

    protected override IVectorStore OpenStore(int dimensions) =>
        new EmbeddedVectorStore(new EmbeddedStoreOptions { Directory = _folder.Path }, new EmbeddingModelInfo("test", "1", dimensions, 8, 8));

    protected override void Dispose(bool disposing) => _folder.Dispose();
}

/// <summary>
/// The contract with the exact-search shortcut off, so non-exact queries go through the HNSW graph,
/// and snapshots every few changes, so reopening goes through snapshot + replay.
/// </summary>
public sealed class EmbeddedVectorStoreGraphContractTests : VectorStoreContractTests
{
    private readonly TempDirectory _folder = new();

    protected override IVectorStore OpenStore(int dimensions) =>
        new EmbeddedVectorStore(
            new EmbeddedStoreOptions { Directory = _folder.Path, ExactThreshold = 0, SnapshotEvery = 7 },
            new EmbeddingModelInfo("test", "1", dimensions, 8, 8));

    protected override void Dispose(bool disposing) => _folder.Dispose();
}

/// <summary>
/// The contract with an int8 graph (rescored with the float vectors), through the graph and
/// snapshot + replay as above.
/// </summary>
public sealed class EmbeddedVectorStoreInt8GraphContractTests : VectorStoreContractTests
{
    private readonly TempDirectory _folder = new();

    protected override IVectorStore OpenStore(int dimensions) =>
        new EmbeddedVectorStore(
            new EmbeddedStoreOptions { Directory = _folder.Path, ExactThreshold = 0, SnapshotEvery = 7, GraphVectors = HnswVectorFormat.Int8 },
            new EmbeddingModelInfo("test", "1", dimensions, 8, 8));

    protected override void Dispose(bool disposing) => _folder.Dispose();
}
