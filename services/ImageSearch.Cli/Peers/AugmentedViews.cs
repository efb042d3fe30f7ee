using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using ImageSearch.Core;
using ImageSearch.Imaging;

namespace ImageSearch.Cli.Peers;

/// <summary>
/// Real embeddings for the vector-search benchmark: augmented views of the gallery photos (random
/// crop of 35-100% of the area at aspect 3:4-4:3, horizontal flip, brightness/contrast/saturation
/// jitter, and for some a down- and up-scale that loses detail), each decoded by the project's
/// decoder and embedded by its embedder, calibration included, exactly as an indexed photo is.
/// </summary>
/// <remarks>
/// Row i is view i / P of photo i % P (P photos), so any prefix covers every photo evenly and a
/// cache of N rows serves every request up to N. The rows are cached in
/// <c>.cache/peers/&lt;model&gt;-&lt;kind&gt;.f32</c> with a JSON sidecar (row count, model key,
/// augmentation version); asking for more rows embeds only the missing ones. Base rows and query
/// rows come from different seeds, so no query is a copy of a base row.
/// </remarks>
internal sealed class AugmentedViews
{
    /// <summary>Bump when the augmentation changes: cached rows of another version are discarded.</summary>
    private const int Version = 1;
    private const int EmbedBatch = 16;

    private AugmentedViews(float[] data, int count, int dimensions, int photos)
    {
        Data = data;
        Count = count;
        Dimensions = dimensions;
        Photos = photos;
    }

    /// <summary>Rows, one after another (Count * Dimensions floats), unit length.</summary>
    public float[] Data { get; }

    public int Count { get; }

    public int Dimensions { get; }

    public int Photos { get; }

    /// <summary>The photo (index into the sorted gallery) row <paramref name="row"/> was made from.</summary>
    public int PhotoOf(int row) => row % Photos;

    public ReadOnlySpan<float> Row(int row) => Data.AsSpan(row * Dimensions, Dimensions);

    /// <summary>
    /// The first <paramref name="count"/> rows of <paramref name="kind"/> ("base" or "queries"),
    /// from the cache where it has them, embedding the rest (progress on stderr).
    /// </summary>
    public static AugmentedViews LoadOrCreate(string cacheDirectory, string kind, int count, string[] photos, IImageDecoder decoder,
        IEmbedder embedder, CancellationToken ct)
    {
        var model = embedder.Model;
        var d = model.Dimensions;
        Directory.CreateDirectory(cacheDirectory);
        var stem = Path.Combine(cacheDirectory, $"{Hosting.ImageSearchHosting.FolderName(model)}-{kind}");
        var dataPath = stem + ".f32";
        var metaPath = stem + ".json";
        var meta = ReadMeta(metaPath);
        var have = meta is not null && meta.Version == Version && meta.Model == model.Key && meta.Photos == photos.Length && File.Exists(dataPath)
            ? (int)Math.Min(meta.Count, new FileInfo(dataPath).Length / (d * 4L))
            : 0;
        if (have < count)
        {
            Console.Error.WriteLine($"bench peers: embedding {count - have} augmented views ({kind}) of {photos.Length} photos; cached in {dataPath}");
            Generate(dataPath, kind, have, count, photos, decoder, embedder, ct);
            File.WriteAllText(metaPath, JsonSerializer.Serialize(new Meta(Version, model.Key, photos.Length, count)));
        }

        var data = new float[(long)count * d];
        using (var file = File.OpenHandle(dataPath))
        {
            var bytes = MemoryMarshal.AsBytes(data.AsSpan());
            var read = 0L;
            while (read < bytes.Length)
            {
                var n = RandomAccess.Read(file, bytes[(int)read..], read);
                if (n == 0)
                {
                    throw new InvalidDataException($"{dataPath} is shorter than {count} rows.");
                }

                read += n;
            }
        }

        return new AugmentedViews(data, count, d, photos.Length);
    }

    /// <summary>Embeds rows [from, to) into <paramref name="path"/>, one photo decode for all of its new views.</summary>
    private static void Generate(string path, string kind, int from, int to, string[] photos, IImageDecoder decoder, IEmbedder embedder, CancellationToken ct)
    {
        var p = photos.Length;
        var m = embedder.Model;
        var rowBytes = m.Dimensions * 4L;
        using var file = File.OpenHandle(path, FileMode.OpenOrCreate, FileAccess.ReadWrite);
        RandomAccess.SetLength(file, Math.Max(RandomAccess.GetLength(file), to * rowBytes));
        var done = 0L;
        var clock = Stopwatch.StartNew();
        var lastReport = 0.0;
        var kindSeed = kind == "base" ? 0 : 1_000_003;

        // One worker per core, each taking whole photos: decode once, crop every new view, embed in
        // batches (the embedder's batch path: one-thread runs, so the workers do not meet at barriers).
        Parallel.For(0, p, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount, CancellationToken = ct }, photo =>
        {
            var firstView = ViewsBelow(from, photo, p);
            var endView = ViewsBelow(to, photo, p);
            if (endView <= firstView)
            {
                return;
            }

            var bytes = File.ReadAllBytes(photos[photo]);
            var info = decoder.ReadInfo(bytes);
            var plans = Enumerable.Range(firstView, endView - firstView)
                .Select(v => ViewPlan.Draw(new Random(Seed(kindSeed, photo, v)), info.Width, info.Height))
                .ToArray();
            var views = decoder.PrepareRegions(bytes, m.InputWidth, m.InputHeight, plans.Select(x => x.Box).ToArray());
            for (var start = 0; start < plans.Length; start += EmbedBatch)
            {
                var n = Math.Min(EmbedBatch, plans.Length - start);
                var batch = new RgbImage[n];
                for (var i = 0; i < n; i++)
                {
                    batch[i] = plans[start + i].Apply(views[start + i]);
                }

                var vectors = embedder.Embed(batch);
                for (var i = 0; i < n; i++)
                {
                    var row = ((long)(firstView + start + i) * p) + photo;
                    RandomAccess.Write(file, MemoryMarshal.AsBytes(vectors[i].AsSpan()), row * rowBytes);
                }

                var total = Interlocked.Add(ref done, n);
                lock (clock)
                {
                    if (clock.Elapsed.TotalSeconds - lastReport >= 15)
                    {
                        lastReport = clock.Elapsed.TotalSeconds;
                        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                            $"  {total} of {to - from} views embedded, {total / clock.Elapsed.TotalSeconds:F0} views/s"));
                    }
                }
            }
        });
        RandomAccess.FlushToDisk(file);
    }

    /// <summary>A seed fixed across processes and runs (HashCode is randomised per process).</summary>
    private static int Seed(int kindSeed, int photo, int view) => unchecked((((kindSeed * 31) + Version) * 100_003) + (photo * 7_919) + view);

    /// <summary>How many views of <paramref name="photo"/> have a row below <paramref name="rows"/>.</summary>
    internal static int ViewsBelow(int rows, int photo, int photos) => rows <= photo ? 0 : ((rows - photo - 1) / photos) + 1;

    private static Meta? ReadMeta(string path)
    {
        try
        {
            return File.Exists(path) ? JsonSerializer.Deserialize<Meta>(File.ReadAllText(path)) : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private sealed record Meta(int Version, string Model, int Photos, long Count);

    /// <summary>One view: the crop, and what is done to the cropped pixels.</summary>
    private sealed record ViewPlan(BoundingBox Box, bool Flip, float Brightness, float Contrast, float Saturation, float Scale)
    {
        public static ViewPlan Draw(Random rng, int width, int height)
        {
            // Random-resized-crop: area share and log-uniform aspect, clamped to the image.
            var area = width * (double)height * (0.35 + (0.65 * rng.NextDouble()));
            var aspect = Math.Exp(Math.Log(3.0 / 4) + (rng.NextDouble() * Math.Log(16.0 / 9)));
            var w = (int)Math.Clamp(Math.Round(Math.Sqrt(area * aspect)), 8, width);
            var h = (int)Math.Clamp(Math.Round(Math.Sqrt(area / aspect)), 8, height);
            var box = new BoundingBox(rng.Next(width - w + 1), rng.Next(height - h + 1), w, h);
            return new ViewPlan(box, rng.Next(2) == 1,
                Brightness: 0.7f + (0.6f * rng.NextSingle()),
                Contrast: 0.7f + (0.6f * rng.NextSingle()),
                Saturation: 0.6f + (0.8f * rng.NextSingle()),
                Scale: rng.NextDouble() < 0.3 ? 0.25f + (0.35f * rng.NextSingle()) : 1f);
        }

        public RgbImage Apply(RgbImage image)
        {
            var (w, h) = (image.Width, image.Height);
            var pixels = image.Pixels;
            if (Scale < 1)
            {
                // A low-resolution copy: shrink, then enlarge back to the model's input.
                var sw = Math.Max(8, (int)(w * Scale));
                var sh = Math.Max(8, (int)(h * Scale));
                pixels = Resampler.Resize(Resampler.Resize(pixels, w, h, sw, sh), sw, sh, w, h);
            }

            var result = new byte[pixels.Length];
            var mean = 0.0;
            for (var i = 0; i < pixels.Length; i++)
            {
                mean += pixels[i];
            }

            var grey = (float)(mean / pixels.Length);
            for (var y = 0; y < h; y++)
            {
                for (var x = 0; x < w; x++)
                {
                    var src = ((y * w) + (Flip ? w - 1 - x : x)) * 3;
                    var dst = ((y * w) + x) * 3;
                    float r = pixels[src], g = pixels[src + 1], b = pixels[src + 2];
                    var luma = (0.299f * r) + (0.587f * g) + (0.114f * b);
                    for (var c = 0; c < 3; c++)
                    {
                        var v = c == 0 ? r : c == 1 ? g : b;
                        v = luma + ((v - luma) * Saturation);
                        v = grey + ((v - grey) * Contrast);
                        result[dst + c] = (byte)Math.Clamp((v * Brightness) + 0.5f, 0, 255);
                    }
                }
            }

            return new RgbImage(w, h, result);
        }
    }
}
