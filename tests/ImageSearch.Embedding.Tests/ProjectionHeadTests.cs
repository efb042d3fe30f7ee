namespace ImageSearch.Embedding.Tests;

/// <summary>The projection head's gradient, what it learns on synthetic data, and how it folds into a calibration.</summary>
public class ProjectionHeadTests
{
    [Fact]
    public void The_analytic_gradient_matches_finite_differences()
    {
        var random = new Random(4);
        const int K = 5, N = 4;
        var anchors = Enumerable.Range(0, N).Select(_ => RandomVector(random, K)).ToArray();
        var positives = Enumerable.Range(0, N).Select(_ => RandomVector(random, K)).ToArray();
        var w = Enumerable.Range(0, K * K).Select(i => (i % (K + 1) == 0 ? 1.0 : 0) + (random.NextDouble() * 0.2) - 0.1).ToArray();
        var analytic = new double[K * K];
        ProjectionHead.LossAndGradient(w, anchors, positives, 0.5, analytic);

        const double H = 1e-6;
        for (var i = 0; i < w.Length; i++)
        {
            var plus = (double[])w.Clone();
            var minus = (double[])w.Clone();
            plus[i] += H;
            minus[i] -= H;
            var numeric = (ProjectionHead.LossAndGradient(plus, anchors, positives, 0.5, new double[K * K])
                - ProjectionHead.LossAndGradient(minus, anchors, positives, 0.5, new double[K * K])) / (2 * H);
            Assert.Equal(numeric, analytic[i], 1e-6);
        }
    }

    [Fact]
    public void It_learns_to_ignore_dimensions_that_augmentation_scrambles()
    {
        // 200 "images" in 16-d; their views keep dimensions 0-7 and scramble 8-15 with strong noise.
        // Matching a view to its image by cosine is poor with the identity and good after training.
        var random = new Random(9);
        const int K = 16, Images = 200;
        var anchors = Enumerable.Range(0, Images).Select(_ => RandomVector(random, K)).ToArray();
        var views = anchors.Select(a => (IReadOnlyList<float[]>)Enumerable.Range(0, 4).Select(_ => Corrupt(a, random)).ToArray()).ToArray();
        var heldOut = anchors.Select(a => Corrupt(a, random)).ToArray();

        var identity = new float[K * K];
        for (var i = 0; i < K; i++)
        {
            identity[(i * K) + i] = 1;
        }

        var (head, report) = ProjectionHead.Train(anchors, views, new ProjectionHeadOptions { Epochs = 60, BatchSize = 32, LearningRate = 3e-3 });

        Assert.True(report.LastEpochLoss < report.FirstEpochLoss, $"loss {report.FirstEpochLoss} -> {report.LastEpochLoss}");
        var before = Top1(anchors, heldOut, identity, K);
        var after = Top1(anchors, heldOut, head, K);
        Assert.True(after > before + 0.2 && after > 0.8, $"top-1 {before:F2} -> {after:F2}");
    }

    private static double Top1(float[][] anchors, float[][] queries, float[] head, int k)
    {
        var projected = anchors.Select(a => Unit(Apply(head, a, k))).ToArray();
        var hits = 0;
        for (var q = 0; q < queries.Length; q++)
        {
            var v = Unit(Apply(head, queries[q], k));
            var best = Enumerable.Range(0, anchors.Length).MaxBy(i => Dot(projected[i], v));
            hits += best == q ? 1 : 0;
        }

        return (double)hits / queries.Length;
    }

    private static float[] Corrupt(float[] anchor, Random random) =>
        anchor.Select((x, d) => d < 8 ? x + (0.1f * Gaussian(random)) : 3f * Gaussian(random)).ToArray();

    private static float[] RandomVector(Random random, int k) => Enumerable.Range(0, k).Select(_ => Gaussian(random)).ToArray();

    private static float Gaussian(Random random) =>
        (float)(Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()));

    private static float[] Apply(float[] head, float[] x, int k) =>
        Enumerable.Range(0, k).Select(r => Enumerable.Range(0, k).Sum(c => head[(r * k) + c] * x[c])).ToArray();

    private static float[] Unit(float[] x)
    {
        var norm = MathF.Sqrt(x.Sum(v => v * v));
        return x.Select(v => v / norm).ToArray();
    }

    private static float Dot(float[] a, float[] b) => a.Zip(b, (x, y) => x * y).Sum();
}
