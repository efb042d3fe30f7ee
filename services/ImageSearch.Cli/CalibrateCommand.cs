using System.Globalization;
using System.CommandLine;
using ImageSearch.Core;
using ImageSearch.Embedding;
using ImageSearch.Imaging;
using Microsoft.Extensions.DependencyInjection;

namespace ImageSearch.Cli;

/// <summary>
/// <c>calibrate --model NAME --images DIR</c>: learns the centring mean (and optionally a
/// PCA-whitening) of the model's raw vectors on a calibration set of photos that is not an
/// evaluation set, and writes models/NAME/calibration.bin. Setup runs it once per model.
/// Each photo contributes several views (whole, centre, four corners), because queries are often
/// crops: the mean should be that of what the index and the queries both see.
/// With <c>--head DIR</c> it then trains a projection head on augmented views of the photos in DIR
/// (the user's own gallery; no labels) and folds it into the calibration (<see cref="ProjectionHead"/>).
/// </summary>
internal static class CalibrateCommand
{
    public static Command Create()
    {
        var images = new Option<string>("--images") { Description = "Folder of calibration photos.", Required = true };
        var whiten = new Option<bool>("--whiten") { Description = "Also learn a PCA-whitening (default: centring only)." };
        var dims = new Option<int?>("--dims") { Description = "With --whiten: output dimensions kept." };
        var head = new Option<string?>("--head") { Description = "With --whiten: also train a projection head on augmented views of the photos in this folder (your gallery, or photos that are not: docs/QUALITY.md measures both)." };
        var headViews = new Option<int>("--head-views") { Description = "Augmented views per photo for --head.", DefaultValueFactory = _ => 8 };
        var output = new Option<string?>("--out") { Description = "Write the calibration here instead of models/NAME/calibration.bin (use it with --Embedding:CalibrationFile)." };
        var command = new Command("calibrate", "Learn a model's centring/whitening from calibration photos.");
        command.Options.Add(images);
        command.Options.Add(whiten);
        command.Options.Add(dims);
        command.Options.Add(head);
        command.Options.Add(headViews);
        command.Options.Add(output);
        command.Options.Add(CliHost.Model);
        command.SetAction((parse, ct) =>
        {
            var folder = parse.GetValue(images)!;
            var files = Directory.Exists(folder)
                ? Directory.EnumerateFiles(folder).Where(f => f.EndsWith(".jpg", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".png", StringComparison.OrdinalIgnoreCase)).Order(StringComparer.Ordinal).ToList()
                : [];
            if (files.Count < 10)
            {
                Console.Error.WriteLine($"calibrate: need at least 10 photos in '{folder}', found {files.Count}.");
                return Task.FromResult(2);
            }

            var options = new EmbeddingOptions
            {
                ModelsDirectory = Path.Combine(CliHost.RepoRoot, "models"),
                Model = parse.GetValue(CliHost.Model) ?? new EmbeddingOptions().Model,
            };
            using var services = new ServiceCollection().AddVipsImageDecoder().BuildServiceProvider();
            var decoder = services.GetRequiredService<IImageDecoder>();
            using var embedder = new OnnxEmbedder(options);
            var model = embedder.RawModel;
            var vectors = new List<float[]>();
            foreach (var chunk in files.Chunk(8))
            {
                ct.ThrowIfCancellationRequested();
                var views = new List<RgbImage>();
                foreach (var file in chunk)
                {
                    var bytes = File.ReadAllBytes(file);
                    var info = decoder.ReadInfo(bytes);
                    foreach (var box in Views(info.Width, info.Height))
                    {
                        views.Add(decoder.Prepare(bytes, model.InputWidth, model.InputHeight, box).Pixels);
                    }
                }

                vectors.AddRange(embedder.EmbedRaw(views));
            }

            var fit = new CalibrationFitOptions { Whiten = parse.GetValue(whiten), OutputDimensions = parse.GetValue(dims) };
            var calibration = Calibration.Fit(model.Key, vectors, fit);
            if (parse.GetValue(head) is { } headFolder)
            {
                if (calibration.ComponentCount == 0)
                {
                    Console.Error.WriteLine("calibrate: --head needs --whiten (the head acts on the whitened components).");
                    return Task.FromResult(2);
                }

                calibration = TrainHead(calibration, embedder, decoder, headFolder, parse.GetValue(headViews), ct);
            }

            var target = parse.GetValue(output) is { } outPath ? Path.GetFullPath(outPath) : embedder.CalibrationPath;
            calibration.Save(target);
            Console.WriteLine($"calibrated {model.Key} on {files.Count} photos ({vectors.Count} views): {calibration} -> {target}");
            return Task.FromResult(0);
        });
        return command;
    }

    /// <summary>
    /// Embeds each photo of <paramref name="folder"/> whole (as ingestion does: the anchor) and as
    /// <paramref name="viewCount"/> random views (crop of 25-100% of the area at an aspect of 3:4 to
    /// 4:3, mirrored half the time, grey one time in five, brightness and contrast within ±20%), then
    /// trains the head on them. Deterministic (fixed seed).
    /// </summary>
    private static Calibration TrainHead(Calibration calibration, OnnxEmbedder embedder, IImageDecoder decoder, string folder, int viewCount, CancellationToken ct)
    {
        var files = Directory.Exists(folder)
            ? Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal).ToList()
            : throw new DirectoryNotFoundException($"--head folder '{folder}' does not exist.");
        var model = embedder.RawModel;
        var random = new Random(17);
        var anchors = new List<float[]>();
        var views = new List<IReadOnlyList<float[]>>();
        foreach (var file in files)
        {
            ct.ThrowIfCancellationRequested();
            byte[] bytes = File.ReadAllBytes(file);
            ImageInfo info;
            try
            {
                info = decoder.ReadInfo(bytes);
            }
            catch (InvalidImageException)
            {
                continue; // not an image: the gallery may hold other files
            }

            var images = new List<RgbImage> { decoder.Prepare(bytes, model.InputWidth, model.InputHeight).Pixels };
            for (var v = 0; v < viewCount; v++)
            {
                images.Add(Augment(decoder.Prepare(bytes, model.InputWidth, model.InputHeight, RandomCrop(info, random)).Pixels, random));
            }

            var raw = embedder.EmbedRaw(images);
            anchors.Add(calibration.ApplyUnnormalised(raw[0]));
            views.Add(raw.Skip(1).Select(r => calibration.ApplyUnnormalised(r)).ToArray());
        }

        if (anchors.Count < 2)
        {
            throw new InvalidOperationException($"--head needs at least two images in '{folder}', found {anchors.Count}.");
        }

        var (weights, report) = ProjectionHead.Train(anchors, views);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"projection head trained on {anchors.Count} photos x {viewCount} views ({report.Batches} batches): loss {report.FirstEpochLoss:F3} -> {report.LastEpochLoss:F3}"));
        return calibration.WithHead(weights);
    }

    private static BoundingBox RandomCrop(ImageInfo info, Random random)
    {
        var area = 0.25 + (0.75 * random.NextDouble());
        var aspect = Math.Exp(Math.Log(0.75) + (random.NextDouble() * (Math.Log(4.0 / 3) - Math.Log(0.75))));
        var w = Math.Clamp((int)Math.Round(info.Width * Math.Sqrt(area * aspect)), 1, info.Width);
        var h = Math.Clamp((int)Math.Round(info.Height * Math.Sqrt(area / aspect)), 1, info.Height);
        return new BoundingBox(random.Next(info.Width - w + 1), random.Next(info.Height - h + 1), w, h);
    }

    private static RgbImage Augment(RgbImage image, Random random)
    {
        var pixels = (byte[])image.Pixels.Clone();
        var (w, h) = (image.Width, image.Height);
        if (random.NextDouble() < 0.5)
        {
            for (var y = 0; y < h; y++)
            {
                for (int left = y * w * 3, right = ((y * w) + w - 1) * 3; left < right; left += 3, right -= 3)
                {
                    for (var c = 0; c < 3; c++)
                    {
                        (pixels[left + c], pixels[right + c]) = (pixels[right + c], pixels[left + c]);
                    }
                }
            }
        }

        var grey = random.NextDouble() < 0.2;
        var contrast = 0.8 + (0.4 * random.NextDouble());
        var brightness = (random.NextDouble() - 0.5) * 0.4 * 255;
        for (var p = 0; p < pixels.Length; p += 3)
        {
            if (grey)
            {
                var luma = (byte)Math.Round((0.299 * pixels[p]) + (0.587 * pixels[p + 1]) + (0.114 * pixels[p + 2]));
                pixels[p] = pixels[p + 1] = pixels[p + 2] = luma;
            }

            for (var c = 0; c < 3; c++)
            {
                pixels[p + c] = (byte)Math.Clamp(Math.Round(((pixels[p + c] - 128) * contrast) + 128 + brightness), 0, 255);
            }
        }

        return new RgbImage(w, h, pixels);
    }

    /// <summary>Whole image, centre crop and four corner crops, each 2/3 of the sides.</summary>
    private static IEnumerable<BoundingBox?> Views(int width, int height)
    {
        yield return null;
        int w = Math.Max(1, width * 2 / 3), h = Math.Max(1, height * 2 / 3);
        yield return new BoundingBox((width - w) / 2, (height - h) / 2, w, h);
        yield return new BoundingBox(0, 0, w, h);
        yield return new BoundingBox(width - w, 0, w, h);
        yield return new BoundingBox(0, height - h, w, h);
        yield return new BoundingBox(width - w, height - h, w, h);
    }
}
