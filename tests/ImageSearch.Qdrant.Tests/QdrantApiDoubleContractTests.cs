using ImageSearch.Core;
using ImageSearch.VectorStore.Tests;

namespace ImageSearch.Qdrant.Tests;

/// <summary>
/// The shared <see cref="IVectorStore"/> contract, run against <see cref="QdrantVectorStore"/> talking to
/// <see cref="QdrantApiDouble"/> (a test double of Qdrant's documented REST API, not Qdrant). Every
/// exchange must match the spec excerpt; a reopened store talks to the same double, so data persists.
/// </summary>
public sealed class QdrantApiDoubleContractTests : VectorStoreContractTests
{
    private readonly QdrantApiDouble _qdrant = new();

    protected override IVectorStore OpenStore(int dimensions) =>
        new QdrantVectorStore(new QdrantOptions { Url = _qdrant.BaseAddress.ToString() }, new EmbeddingModelInfo("contract", "1", dimensions, 8, 8), _qdrant);

    protected override void Dispose(bool disposing)
    {
        _qdrant.AssertCompliant();
        _qdrant.Dispose();
    }
}

/// <summary>The same contract with tiny upsert batches, so every multi-point write spans several requests.</summary>
public sealed class QdrantApiDoubleSmallBatchContractTests : VectorStoreContractTests
{
    private readonly QdrantApiDouble _qdrant = new("http://proxy.test/qdrant/");

    protected override IVectorStore OpenStore(int dimensions) =>
        new QdrantVectorStore(
            new QdrantOptions { Url = _qdrant.BaseAddress.ToString(), UpsertBatchSize = 3 },
            new EmbeddingModelInfo("contract", "1", dimensions, 8, 8),
            _qdrant);

    protected override void Dispose(bool disposing)
    {
        _qdrant.AssertCompliant();
        _qdrant.Dispose();
    }
}
