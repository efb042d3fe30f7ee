using System.Text.Json;
using System.Text.Json.Serialization;

namespace ImageSearch.Embedding;

/// <summary>
/// The model.json written by the exporter next to model.onnx: names the graph's input and output
/// and says how the input is laid out.
/// </summary>
internal sealed record ModelManifest(string Name, string Version, ModelInputSpec Input, ModelOutputSpec Output, string Sha256)
{
    public const string FileName = "model.json";

    public const string ModelFileName = "model.onnx";

    public string Key => $"{Name}@{Version}";

    /// <summary>Reads and checks a manifest; every problem becomes an <see cref="InvalidDataException"/> naming the file.</summary>
    public static ModelManifest Load(string path)
    {
        ModelManifest? manifest;
        try
        {
            using var stream = File.OpenRead(path);
            manifest = JsonSerializer.Deserialize(stream, ModelManifestJsonContext.Default.ModelManifest);
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"{path} is not a valid model manifest: {ex.Message}", ex);
        }

        var problem = manifest is null ? "it is empty" : manifest.Check();
        return problem is null ? manifest! : throw new InvalidDataException($"{path}: {problem}.");
    }

    /// <summary>The first unsupported or missing field, or null when the embedder can run this model.</summary>
    private string? Check()
    {
        if (string.IsNullOrWhiteSpace(Name) || string.IsNullOrWhiteSpace(Version))
        {
            return "\"name\" and \"version\" are required";
        }

        if (Input is null || Output is null)
        {
            return "\"input\" and \"output\" are required";
        }

        if (string.IsNullOrEmpty(Input.Name) || Input.Width is < 1 or > 8192 || Input.Height is < 1 or > 8192)
        {
            return "\"input\" needs a name and a width and height within [1, 8192]";
        }

        // The embedder feeds raw 0..255 RGB planes; anything else would need a different packer.
        if (Input.Layout != "NCHW" || Input.Channels != "RGB" || Input.Range is not [0, 255])
        {
            return $"input layout {Input.Layout}/{Input.Channels}/[{string.Join(",", Input.Range ?? [])}] is not supported (NCHW/RGB/[0,255] is)";
        }

        if (string.IsNullOrEmpty(Output.Name) || Output.Dimensions is < 1 or > 65536)
        {
            return "\"output\" needs a name and dimensions within [1, 65536]";
        }

        return Sha256 is { Length: 64 } && Sha256.All(char.IsAsciiHexDigit)
            ? null
            : "\"sha256\" must be the 64-hex-digit SHA-256 of model.onnx";
    }
}

/// <summary>The "input" object of model.json.</summary>
internal sealed record ModelInputSpec(string Name, int Width, int Height, string Layout, string Channels, float[] Range);

/// <summary>The "output" object of model.json.</summary>
internal sealed record ModelOutputSpec(string Name, int Dimensions);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, AllowTrailingCommas = true, ReadCommentHandling = JsonCommentHandling.Skip)]
[JsonSerializable(typeof(ModelManifest))]
internal sealed partial class ModelManifestJsonContext : JsonSerializerContext;
