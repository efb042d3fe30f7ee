namespace ImageSearch.VectorStore.Tests;

public sealed class ExactIndexTests
{
    [Theory]
    [InlineData(100, 3000)] // not a multiple of any SIMD width: exercises the tails
    [InlineData(768, 1500)]
    public void Simd_top_k_equals_the_scalar_reference(int dim, int count)
    {
        var all = TestData.Clustered(count + 25, dim, clusters: 30, spread: 0.7, seed: dim);
        var data = all[..count];
        var index = new ExactIndex(dim);
        for (var i = 0; i < count; i++)
        {
            index.Set(i, data[i]);
        }

        for (var i = 0; i < count; i += 7)
        {
            index.Remove(i);
        }

        const int k = 10;
        foreach (var query in all[count..])
        {
            var (labels, scores) = (new long[k], new float[k]);
            var (refLabels, refScores) = (new long[k], new float[k]);
            Assert.Equal(k, index.Search(query, k, labels, scores));
            Assert.Equal(k, index.SearchReference(query, k, refLabels, refScores));
            for (var j = 0; j < k; j++)
            {
                Assert.Equal(refScores[j], scores[j], 1e-5f);
                Assert.NotEqual(0, labels[j] % 7);

                // Float sums in a different order may swap near-ties; elsewhere the order must agree.
                var gapBefore = j == 0 ? float.MaxValue : refScores[j - 1] - refScores[j];
                var gapAfter = j == k - 1 ? float.MaxValue : refScores[j] - refScores[j + 1];
                if (Math.Min(gapBefore, gapAfter) > 1e-5f)
                {
                    Assert.Equal(refLabels[j], labels[j]);
                }
            }
        }
    }

    [Fact]
    public void Ties_keep_the_lower_label_first()
    {
        var index = new ExactIndex(3);
        float[] v = [0.6f, 0.8f, 0f];
        foreach (var label in new long[] { 5, 2, 9, 2048 })
        {
            index.Set(label, v);
        }

        index.Set(7, [1f, 0f, 0f]);
        var labels = new long[10];
        var scores = new float[10];
        Assert.Equal(5, index.Search(v, 10, labels, scores));
        Assert.Equal([2L, 5, 9, 2048, 7], labels[..5]);
    }

    [Fact]
    public void Set_overwrites_and_remove_forgets()
    {
        var index = new ExactIndex(2);
        index.Set(0, [1f, 0f]);
        index.Set(0, [0f, 1f]);
        index.Set(5000, [1f, 0f]);
        Assert.Equal(2, index.Count);
        Assert.Equal([0f, 1f], index.Get(0).ToArray());

        Assert.True(index.Remove(0));
        Assert.False(index.Remove(0));
        Assert.False(index.Contains(0));
        Assert.True(index.Get(0).IsEmpty);
        Assert.False(index.Remove(123_456_789));
        Assert.Equal(1, index.Count);
        Assert.Throws<ArgumentOutOfRangeException>(() => index.Set(-1, [1f, 0f]));
        Assert.Throws<ArgumentException>(() => index.Set(1, [1f]));
    }
}
