namespace ImageSearch.Embedding.Tests;

public class CalibrationTests
{
    private const string Key = "synthetic@1";

    [Fact]
    public void A_head_folded_into_the_projection_applies_after_it_and_survives_a_round_trip()
    {
        var samples = CorrelatedSamples(200, 8, seed: 5);
        var calibration = Calibration.Fit(Key, samples, new CalibrationFitOptions { OutputDimensions = 6 });
        var random = new Random(1);
        var head = Enumerable.Range(0, 36).Select(i => (i % 7 == 0 ? 1f : 0f) + ((float)random.NextDouble() * 0.4f) - 0.2f).ToArray();

        var withHead = calibration.WithHead(head);
        Assert.NotEqual(calibration.Fingerprint, withHead.Fingerprint);
        var reloaded = Calibration.Parse(withHead.ToBytes());
        foreach (var x in samples.Take(10))
        {
            var z = calibration.ApplyUnnormalised(x);
            var expected = Enumerable.Range(0, 6).Select(r => Enumerable.Range(0, 6).Sum(c => head[(r * 6) + c] * z[c])).ToArray();
            var norm = MathF.Sqrt(expected.Sum(v => v * v));
            var actual = reloaded.Apply(x);
            for (var d = 0; d < 6; d++)
            {
                Assert.Equal(expected[d] / norm, actual[d], 1e-4f);
            }
        }

        Assert.Throws<ArgumentException>(() => calibration.WithHead(new float[35]));
        Assert.Throws<InvalidOperationException>(() => Calibration.Fit(Key, samples, new CalibrationFitOptions { Whiten = false }).WithHead(new float[64]));
    }

    /// <summary>n samples of x = A z + μ with z standard normal: correlated, off-centre, full rank.</summary>
    private static List<float[]> CorrelatedSamples(int n, int dims, int seed)
    {
        var random = new Random(seed);
        var mixing = new double[dims, dims];
        for (var i = 0; i < dims; i++)
        {
            for (var j = 0; j < dims; j++)
            {
                // Decaying scales give well-separated eigenvalues.
                mixing[i, j] = (random.NextDouble() - 0.5) * 4.0 / (1 + j);
            }
        }

        var samples = new List<float[]>(n);
        var z = new double[dims];
        for (var s = 0; s < n; s++)
        {
            for (var j = 0; j < dims; j++)
            {
                z[j] = Gaussian(random);
            }

            var x = new float[dims];
            for (var i = 0; i < dims; i++)
            {
                var sum = 3.0 + i; // mean offset
                for (var j = 0; j < dims; j++)
                {
                    sum += mixing[i, j] * z[j];
                }

                x[i] = (float)sum;
            }

            samples.Add(x);
        }

        return samples;
    }

    private static double Gaussian(Random random) =>
        Math.Sqrt(-2.0 * Math.Log(1.0 - random.NextDouble())) * Math.Cos(2.0 * Math.PI * random.NextDouble());

    /// <summary>Mean and covariance of the projected (not normalised) samples.</summary>
    private static (double[] Mean, double[,] Covariance) ProjectedStatistics(Calibration calibration, IReadOnlyList<float[]> samples)
    {
        var k = calibration.OutputDimensions;
        var projected = samples.Select(x =>
        {
            var y = new float[k];
            calibration.Project(x, y);
            return y;
        }).ToList();
        var mean = new double[k];
        foreach (var y in projected)
        {
            for (var i = 0; i < k; i++)
            {
                mean[i] += y[i] / (double)samples.Count;
            }
        }

        var covariance = new double[k, k];
        foreach (var y in projected)
        {
            for (var i = 0; i < k; i++)
            {
                for (var j = 0; j < k; j++)
                {
                    covariance[i, j] += (y[i] - mean[i]) * (y[j] - mean[j]) / (samples.Count - 1);
                }
            }
        }

        return (mean, covariance);
    }

    private static void AssertIdentity(double[,] covariance, double tolerance)
    {
        for (var i = 0; i < covariance.GetLength(0); i++)
        {
            for (var j = 0; j < covariance.GetLength(1); j++)
            {
                Assert.True(Math.Abs(covariance[i, j] - (i == j ? 1.0 : 0.0)) < tolerance,
                    $"covariance[{i},{j}] = {covariance[i, j]}");
            }
        }
    }

    [Fact]
    public void FullWhitening_RemovesTheMeanAndWhitensTheCovariance()
    {
        var samples = CorrelatedSamples(3000, 12, seed: 1);

        var calibration = Calibration.Fit(Key, samples, new CalibrationFitOptions { Shrinkage = 0 });

        Assert.Equal(12, calibration.ComponentCount);
        Assert.Equal(12, calibration.OutputDimensions);
        var (mean, covariance) = ProjectedStatistics(calibration, samples);
        Assert.All(mean, m => Assert.True(Math.Abs(m) < 1e-4, $"mean {m}"));
        AssertIdentity(covariance, 1e-3);
        // The learned mean is the sample mean.
        for (var i = 0; i < 12; i++)
        {
            Assert.Equal(samples.Average(x => (double)x[i]), calibration.Mean[i], 1e-4);
        }
    }

    [Fact]
    public void KeptDimensions_AreTheLeadingComponentsAndWhite()
    {
        var samples = CorrelatedSamples(3000, 12, seed: 2);
        var full = Calibration.Fit(Key, samples, new CalibrationFitOptions { Shrinkage = 0 });

        var reduced = Calibration.Fit(Key, samples, new CalibrationFitOptions { Shrinkage = 0, OutputDimensions = 5 });

        Assert.Equal(5, reduced.OutputDimensions);
        Assert.Equal(full.Eigenvalues[..5].ToArray(), reduced.Eigenvalues.ToArray());
        AssertIdentity(ProjectedStatistics(reduced, samples).Covariance, 1e-3);
        for (var i = 1; i < 12; i++)
        {
            Assert.True(full.Eigenvalues[i - 1] > full.Eigenvalues[i]);
        }
    }

    [Fact]
    public void Shrinkage_ScalesComponentVarianceTowardsTheMeanEigenvalue()
    {
        var samples = CorrelatedSamples(3000, 12, seed: 3);
        const double Beta = 0.5;

        var calibration = Calibration.Fit(Key, samples, new CalibrationFitOptions { Shrinkage = Beta });

        var eigenvalues = calibration.Eigenvalues.ToArray().Select(v => (double)v).ToArray();
        var meanEigenvalue = eigenvalues.Sum() / 12;
        var covariance = ProjectedStatistics(calibration, samples).Covariance;
        for (var i = 0; i < 12; i++)
        {
            var expected = eigenvalues[i] / (((1 - Beta) * eigenvalues[i]) + (Beta * meanEigenvalue));
            Assert.Equal(expected, covariance[i, i], 1e-3);
        }
    }

    [Fact]
    public void CentringOnly_SubtractsTheMeanAndKeepsDimensions()
    {
        var samples = CorrelatedSamples(200, 6, seed: 4);

        var calibration = Calibration.Fit(Key, samples, new CalibrationFitOptions { Whiten = false });

        Assert.Equal(0, calibration.ComponentCount);
        Assert.Equal(6, calibration.OutputDimensions);
        var (mean, _) = ProjectedStatistics(calibration, samples);
        Assert.All(mean, m => Assert.True(Math.Abs(m) < 1e-4));
    }

    [Fact]
    public void FewerSamplesThanDimensions_UsesTheGramMatrixAndWhitensTheSpannedSubspace()
    {
        // 40 samples in 100-d: centred, they span 39 directions.
        var samples = CorrelatedSamples(40, 100, seed: 5);

        var auto = Calibration.Fit(Key, samples, new CalibrationFitOptions { Shrinkage = 0 });
        var covarianceForm = Calibration.Fit(Key, samples, new CalibrationFitOptions { Shrinkage = 0, Method = PcaMethod.Covariance });

        Assert.Equal(39, auto.OutputDimensions);
        Assert.Equal(39, covarianceForm.OutputDimensions);
        AssertIdentity(ProjectedStatistics(auto, samples).Covariance, 1e-3);
        for (var i = 0; i < 39; i++)
        {
            Assert.Equal(covarianceForm.Eigenvalues[i], auto.Eigenvalues[i], covarianceForm.Eigenvalues[i] * 1e-4);
        }

        // Same components (signs are normalised, so the projections agree), compared on the leading ones.
        foreach (var x in samples.Take(5))
        {
            var a = new float[39];
            var b = new float[39];
            auto.Project(x, a);
            covarianceForm.Project(x, b);
            for (var i = 0; i < 10; i++)
            {
                Assert.Equal(b[i], a[i], 1e-3);
            }
        }
    }

    [Fact]
    public void AskingForMoreDimensionsThanTheSamplesSpan_Fails()
    {
        var samples = CorrelatedSamples(10, 30, seed: 6);

        var error = Assert.Throws<ArgumentException>(() =>
            Calibration.Fit(Key, samples, new CalibrationFitOptions { OutputDimensions = 20 }));
        Assert.Contains("only vary along 9 directions", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Fit_RejectsBadInput()
    {
        Assert.Throws<ArgumentException>(() => Calibration.Fit(Key, [new float[3]]));
        Assert.Throws<ArgumentException>(() => Calibration.Fit(Key, [new float[3], new float[4]]));
        Assert.Throws<ArgumentException>(() => Calibration.Fit(Key, [new float[3], [1, float.NaN, 0]]));
        Assert.Contains("all equal", Assert.Throws<ArgumentException>(() => Calibration.Fit(Key, [[1, 2, 3], [1, 2, 3]])).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            Calibration.Fit(Key, [new float[3], new float[3]], new CalibrationFitOptions { Shrinkage = 2 }));
    }

    [Fact]
    public void Apply_ReturnsUnitVectors()
    {
        var samples = CorrelatedSamples(500, 12, seed: 7);
        var calibration = Calibration.Fit(Key, samples, new CalibrationFitOptions { OutputDimensions = 8 });

        foreach (var x in samples.Take(20))
        {
            var y = calibration.Apply(x);
            Assert.Equal(8, y.Length);
            Assert.Equal(1.0, TestSupport.Norm(y), 1e-5);
        }
    }

    [Fact]
    public void File_RoundTripsExactlyAndFittingIsDeterministic()
    {
        var samples = CorrelatedSamples(300, 16, seed: 8);
        var calibration = Calibration.Fit(Key, samples, new CalibrationFitOptions { OutputDimensions = 10, Shrinkage = 0.2 });
        using var temp = new TestSupport.TempDirectory();
        var path = Path.Combine(temp.Path, Calibration.FileName);

        calibration.Save(path);
        var loaded = Calibration.Load(path);

        Assert.Equal(calibration.ToBytes(), File.ReadAllBytes(path));
        Assert.Equal(calibration.ToBytes(), Calibration.Fit(Key, samples, new CalibrationFitOptions { OutputDimensions = 10, Shrinkage = 0.2 }).ToBytes());
        Assert.Equal(Key, loaded.ModelKey);
        Assert.Equal(16, loaded.InputDimensions);
        Assert.Equal(10, loaded.OutputDimensions);
        Assert.Equal(300, loaded.SampleCount);
        Assert.Equal(0.2f, loaded.Shrinkage);
        Assert.Equal(calibration.Fingerprint, loaded.Fingerprint);
        Assert.Equal(calibration.Mean.ToArray(), loaded.Mean.ToArray());
        Assert.Equal(calibration.Eigenvalues.ToArray(), loaded.Eigenvalues.ToArray());
        Assert.Equal(calibration.Apply(samples[0]), loaded.Apply(samples[0]));
        Assert.Single(Directory.GetFiles(temp.Path)); // no temporary file left behind
    }

    [Fact]
    public void File_HasTheDocumentedLayout()
    {
        var samples = CorrelatedSamples(50, 4, seed: 9);
        var bytes = Calibration.Fit(Key, samples, new CalibrationFitOptions { OutputDimensions = 2 }).ToBytes();

        Assert.Equal("ISEMBCAL"u8.ToArray(), bytes[..8]);
        Assert.Equal(1u, BitConverter.ToUInt32(bytes, 8));
        Assert.Equal(4u, BitConverter.ToUInt32(bytes, 12));
        Assert.Equal(2u, BitConverter.ToUInt32(bytes, 16));
        Assert.Equal(50u, BitConverter.ToUInt32(bytes, 20));
        Assert.Equal((uint)Key.Length, BitConverter.ToUInt32(bytes, 28));
        Assert.Equal(32 + Key.Length + (4 * (4 + 8 + 2)) + 32, bytes.Length);
        Assert.Equal(System.Security.Cryptography.SHA256.HashData(bytes.AsSpan(..^32)), bytes[^32..]);
    }

    [Fact]
    public void Load_RejectsDamagedFiles()
    {
        var bytes = Calibration.Fit(Key, CorrelatedSamples(50, 4, seed: 10)).ToBytes();

        var flipped = (byte[])bytes.Clone();
        flipped[40] ^= 1;
        Assert.Contains("checksum", Assert.Throws<InvalidDataException>(() => Calibration.Parse(flipped)).Message, StringComparison.Ordinal);
        Assert.Throws<InvalidDataException>(() => Calibration.Parse(bytes.AsSpan(..^1)));
        Assert.Throws<InvalidDataException>(() => Calibration.Parse("not a calibration file at all, clearly"u8));
    }
}
