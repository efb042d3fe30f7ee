using System.Numerics.Tensors;

namespace ImageSearch.Embedding;

/// <summary>How <see cref="ProjectionHead.Train"/> learns.</summary>
public sealed record ProjectionHeadOptions
{
    /// <summary>Passes over the images.</summary>
    public int Epochs { get; init; } = 40;

    /// <summary>Images per batch; every other image of the batch is a negative for each one.</summary>
    public int BatchSize { get; init; } = 64;

    /// <summary>Adam step size.</summary>
    public double LearningRate { get; init; } = 1e-3;

    /// <summary>Softmax temperature of the contrastive loss over cosine similarities.</summary>
    public double Temperature { get; init; } = 0.1;

    /// <summary>
    /// Weight of ||W - I||² in the loss: keeps the head close to the identity, so that what it
    /// learns from a few hundred images bends the whitened space rather than replacing it.
    /// </summary>
    public double IdentityPull { get; init; } = 1e-2;

    /// <summary>Seed of the batch order and of the views drawn (training is deterministic for a seed).</summary>
    public int Seed { get; init; } = 1;
}

/// <summary>What training did: the loss of the first and of the last epoch (mean per batch).</summary>
public sealed record ProjectionHeadReport(double FirstEpochLoss, double LastEpochLoss, int Batches);

/// <summary>
/// A linear projection head W (K x K) trained Siamese-style, without labels, on augmented views of
/// the user's own photos: each image's whole-image vector (anchor) and a randomly augmented view of
/// it (positive) must be closer, after W and L2-normalisation, than the anchor and the views of the
/// other images in the batch (symmetric InfoNCE / NT-Xent, a multi-negative triplet loss), with a
/// pull towards the identity. Plain managed math with hand-written gradients and Adam; deterministic.
/// </summary>
public static class ProjectionHead
{
    /// <summary>
    /// Learns W from <paramref name="anchors"/> (one vector per image, K-d, centred and whitened, not
    /// normalised) and <paramref name="views"/> (for each image, its augmented views' vectors).
    /// Returns W row-major, for <see cref="Calibration.WithHead"/>.
    /// </summary>
    public static (float[] Head, ProjectionHeadReport Report) Train(
        IReadOnlyList<float[]> anchors, IReadOnlyList<IReadOnlyList<float[]>> views, ProjectionHeadOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(anchors);
        ArgumentNullException.ThrowIfNull(views);
        options ??= new ProjectionHeadOptions();
        if (anchors.Count < 2 || views.Count != anchors.Count || views.Any(v => v.Count == 0))
        {
            throw new ArgumentException("Need at least two images, each with at least one view.", nameof(views));
        }

        var k = anchors[0].Length;
        if (anchors.Any(a => a.Length != k) || views.Any(v => v.Any(x => x.Length != k)))
        {
            throw new ArgumentException($"Every vector must have {k} dimensions.", nameof(views));
        }

        var w = Identity(k);
        var adamM = new double[k * k];
        var adamV = new double[k * k];
        var gradient = new double[k * k];
        var random = new Random(options.Seed);
        var order = Enumerable.Range(0, anchors.Count).ToArray();
        var batch = Math.Min(options.BatchSize, anchors.Count);
        double first = 0, last = 0;
        var step = 0;
        var batches = 0;
        for (var epoch = 0; epoch < options.Epochs; epoch++)
        {
            random.Shuffle(order);
            double epochLoss = 0;
            var epochBatches = 0;
            for (var start = 0; start + batch <= order.Length; start += batch)
            {
                var members = order.AsSpan(start, batch).ToArray();
                var a = members.Select(i => anchors[i]).ToArray();
                var p = members.Select(i => views[i][random.Next(views[i].Count)]).ToArray();
                Array.Clear(gradient);
                epochLoss += LossAndGradient(w, a, p, options.Temperature, gradient);
                for (var i = 0; i < k * k; i++)
                {
                    var identity = i % (k + 1) == 0 ? 1 : 0;
                    gradient[i] += 2 * options.IdentityPull * (w[i] - identity);
                }

                Adam(w, gradient, adamM, adamV, ++step, options.LearningRate);
                epochBatches++;
            }

            epochLoss /= Math.Max(1, epochBatches);
            batches += epochBatches;
            if (epoch == 0)
            {
                first = epochLoss;
            }

            last = epochLoss;
        }

        return (w.Select(x => (float)x).ToArray(), new ProjectionHeadReport(first, last, batches));
    }

    /// <summary>
    /// Symmetric InfoNCE over the batch: row i of S = cos(W aᵢ, W pⱼ) / τ must pick j = i, and so
    /// must column i. Adds dLoss/dW to <paramref name="gradient"/> and returns the loss.
    /// </summary>
    internal static double LossAndGradient(double[] w, float[][] anchors, float[][] positives, double temperature, double[] gradient)
    {
        var n = anchors.Length;
        var k = anchors[0].Length;
        var u = anchors.Select(x => Multiply(w, x, k)).ToArray();
        var v = positives.Select(x => Multiply(w, x, k)).ToArray();
        var uNorm = u.Select(Norm).ToArray();
        var vNorm = v.Select(Norm).ToArray();
        var uHat = u.Select((x, i) => Scale(x, 1 / uNorm[i])).ToArray();
        var vHat = v.Select((x, i) => Scale(x, 1 / vNorm[i])).ToArray();

        var s = new double[n, n];
        for (var i = 0; i < n; i++)
        {
            for (var j = 0; j < n; j++)
            {
                s[i, j] = Dot(uHat[i], vHat[j]) / temperature;
            }
        }

        // dLoss/dS for the row-wise and the column-wise softmax cross-entropy, averaged.
        var g = new double[n, n];
        double loss = 0;
        for (var i = 0; i < n; i++)
        {
            loss += SoftmaxGradient(n, j => s[i, j], i, (j, value) => g[i, j] += value / (2.0 * n));
            loss += SoftmaxGradient(n, j => s[j, i], i, (j, value) => g[j, i] += value / (2.0 * n));
        }

        loss /= 2.0 * n;

        // Back through the cosines: dS_ij/dûᵢ = v̂ⱼ/τ, dS_ij/dv̂ⱼ = ûᵢ/τ; then through the normalisation
        // d x̂/dx = (I - x̂x̂ᵀ)/|x|; then dx/dW = (input)ᵀ.
        for (var i = 0; i < n; i++)
        {
            var dU = new double[k];
            var dV = new double[k];
            for (var j = 0; j < n; j++)
            {
                Accumulate(dU, vHat[j], g[i, j] / temperature);
                Accumulate(dV, uHat[j], g[j, i] / temperature);
            }

            AddOuter(gradient, ThroughNormalisation(dU, uHat[i], uNorm[i]), anchors[i], k);
            AddOuter(gradient, ThroughNormalisation(dV, vHat[i], vNorm[i]), positives[i], k);
        }

        return loss;
    }

    private static double SoftmaxGradient(int n, Func<int, double> logit, int target, Action<int, double> add)
    {
        var max = double.NegativeInfinity;
        for (var j = 0; j < n; j++)
        {
            max = Math.Max(max, logit(j));
        }

        double sum = 0;
        for (var j = 0; j < n; j++)
        {
            sum += Math.Exp(logit(j) - max);
        }

        for (var j = 0; j < n; j++)
        {
            add(j, (Math.Exp(logit(j) - max) / sum) - (j == target ? 1 : 0));
        }

        return -(logit(target) - max - Math.Log(sum));
    }

    private static double[] ThroughNormalisation(double[] dHat, double[] hat, double norm)
    {
        var along = Dot(dHat, hat);
        var result = new double[dHat.Length];
        for (var d = 0; d < result.Length; d++)
        {
            result[d] = (dHat[d] - (along * hat[d])) / norm;
        }

        return result;
    }

    private static void AddOuter(double[] gradient, double[] left, float[] right, int k)
    {
        for (var r = 0; r < k; r++)
        {
            var l = left[r];
            if (l == 0)
            {
                continue;
            }

            var row = gradient.AsSpan(r * k, k);
            for (var c = 0; c < k; c++)
            {
                row[c] += l * right[c];
            }
        }
    }

    private static void Adam(double[] w, double[] gradient, double[] m, double[] v, int step, double rate)
    {
        const double Beta1 = 0.9, Beta2 = 0.999, Epsilon = 1e-8;
        var correction1 = 1 - Math.Pow(Beta1, step);
        var correction2 = 1 - Math.Pow(Beta2, step);
        for (var i = 0; i < w.Length; i++)
        {
            m[i] = (Beta1 * m[i]) + ((1 - Beta1) * gradient[i]);
            v[i] = (Beta2 * v[i]) + ((1 - Beta2) * gradient[i] * gradient[i]);
            w[i] -= rate * (m[i] / correction1) / (Math.Sqrt(v[i] / correction2) + Epsilon);
        }
    }

    private static double[] Identity(int k)
    {
        var w = new double[k * k];
        for (var i = 0; i < k; i++)
        {
            w[(i * k) + i] = 1;
        }

        return w;
    }

    private static double[] Multiply(double[] w, float[] x, int k)
    {
        var result = new double[k];
        for (var r = 0; r < k; r++)
        {
            var row = w.AsSpan(r * k, k);
            double sum = 0;
            for (var c = 0; c < k; c++)
            {
                sum += row[c] * x[c];
            }

            result[r] = sum;
        }

        return result;
    }

    private static double Norm(double[] x) => Math.Max(Math.Sqrt(Dot(x, x)), 1e-12);

    private static double Dot(double[] a, double[] b) => TensorPrimitives.Dot<double>(a, b);

    private static double[] Scale(double[] x, double factor) => x.Select(v => v * factor).ToArray();

    private static void Accumulate(double[] into, double[] x, double factor)
    {
        for (var d = 0; d < into.Length; d++)
        {
            into[d] += factor * x[d];
        }
    }
}
