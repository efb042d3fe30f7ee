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
/// </summary>
internal static class CalibrateCommand
{
    public static Command Create()
    {
        var images = new Option<string>("--images") { Description = "Folder of calibration photos.", Required = true };
        var whiten = new Option<bool>("--whiten") { Description = "Also learn a PCA-whitening (default: centring only)." };
        var dims = new Option<int?>("--dims") { Description = "With --whiten: output dimensions kept." };
        var command = new Command("calibrate", "Learn a model's centring/whitening from calibration photos.");
        command.Options.Add(images);
        command.Options.Add(whiten);
        command.Options.Add(dims);
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
            calibration.Save(embedder.CalibrationPath);
            Console.WriteLine($"calibrated {model.Key} on {files.Count} photos ({vectors.Count} views): {calibration} -> {embedder.CalibrationPath}");
            return Task.FromResult(0);
        });
        return command;
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
