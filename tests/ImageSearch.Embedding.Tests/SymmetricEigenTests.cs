namespace ImageSearch.Embedding.Tests;

public class SymmetricEigenTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(7)]
    [InlineData(64)]
    public void Decompose_GivesOrthonormalEigenvectorsSortedDescending(int n)
    {
        var random = new Random(n);
        var a = new double[n * n];
        for (var i = 0; i < n; i++)
        {
            for (var j = i; j < n; j++)
            {
                a[(i * n) + j] = a[(j * n) + i] = random.NextDouble() - 0.5;
            }
        }

        var (values, vectors) = SymmetricEigen.Decompose((double[])a.Clone(), n);

        for (var k = 1; k < n; k++)
        {
            Assert.True(values[k - 1] >= values[k]);
        }

        for (var k = 0; k < n; k++)
        {
            // A v = λ v
            for (var i = 0; i < n; i++)
            {
                var av = 0.0;
                for (var j = 0; j < n; j++)
                {
                    av += a[(i * n) + j] * vectors[(k * n) + j];
                }

                Assert.Equal(values[k] * vectors[(k * n) + i], av, 1e-10);
            }

            // Orthonormal rows.
            for (var l = 0; l < n; l++)
            {
                var dot = 0.0;
                for (var j = 0; j < n; j++)
                {
                    dot += vectors[(k * n) + j] * vectors[(l * n) + j];
                }

                Assert.Equal(k == l ? 1.0 : 0.0, dot, 1e-10);
            }
        }
    }

    [Fact]
    public void Decompose_HandlesRankDeficientAndDiagonalInput()
    {
        // Diagonal with repeated and zero entries: eigenvalues are the diagonal, sorted.
        var a = new double[] { 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 2 };
        var (values, _) = SymmetricEigen.Decompose(a, 4);
        Assert.Equal([5.0, 2.0, 2.0, 0.0], values.Select(v => Math.Round(v, 12)));
    }
}
