using System.Globalization;
using Microsoft.Extensions.Options;

namespace ImageSearch.Embedding;

/// <summary>Settings of <see cref="OnnxEmbedder"/>, bound from the <see cref="SectionName"/> configuration section.</summary>
public sealed class EmbeddingOptions
{
    /// <summary>Conventional configuration section name.</summary>
    public const string SectionName = "Embedding";

    /// <summary>Value of <see cref="Device"/> that runs the model on the CPU.</summary>
    public const string CpuDevice = "cpu";

    /// <summary>Value of <see cref="Device"/> that runs the model on an NVIDIA GPU.</summary>
    public const string CudaDevice = "cuda";

    /// <summary>
    /// Environment variable naming the directory of the ONNX Runtime native core, used when
    /// <see cref="OnnxRuntimeNativeDirectory"/> is not set.
    /// </summary>
    public const string NativeDirectoryEnvironmentVariable = "ORT_NATIVE_DIR";

    /// <summary>Folder holding one sub-folder per model (<c>NAME/model.onnx</c>, <c>NAME/model.json</c>); relative paths start at the current directory.</summary>
    public string ModelsDirectory { get; set; } = "models";

    /// <summary>
    /// Name of the model sub-folder to load. MobileNetV2-1.4 with R-MAC pooling of its last
    /// convolutional map is the default: on the development benchmark it beat the same network's
    /// average, max and GeM pooling, and InceptionV3-mixed7, on instance and category retrieval, at
    /// the speed of the plain MobileNet (docs/QUALITY.md).
    /// </summary>
    public string Model { get; set; } = "mobilenet-v2-1.4-rmac";

    /// <summary>
    /// The calibration file to use instead of the model folder's calibration.bin (for example one
    /// with a projection head trained on the user's own photos: <c>./imagesearch calibrate --head</c>).
    /// Empty: the model folder's. Its fingerprint names the index, so switching builds a new index.
    /// </summary>
    public string CalibrationFile { get; set; } = "";

    /// <summary>
    /// "cpu" or "cuda" (case-insensitive). "cuda" never falls back to the CPU: when the GPU cannot be
    /// used, creating the embedder fails with <see cref="DeviceUnavailableException"/>.
    /// </summary>
    public string Device { get; set; } = CpuDevice;

    /// <summary>CUDA device ordinal used when <see cref="Device"/> is "cuda".</summary>
    public int CudaDeviceId { get; set; }

    /// <summary>
    /// Threads ONNX Runtime uses inside one operator for a single image (a query: latency counts);
    /// 0 means one per logical processor.
    /// </summary>
    public int IntraOpThreads { get; set; }

    /// <summary>
    /// Threads inside one operator for a batch of images (ingestion: throughput counts), on the CPU;
    /// 0 means one per logical processor. Default 1: ingestion runs several batches at once, each on
    /// its own core, which beats splitting every operator across cores that the decoder also uses.
    /// With more than one, the extra threads run at ingestion's priority (Priority:Ingestion), also
    /// when a query's many images (region windows, a batch of queries) are split over them.
    /// </summary>
    public int BatchIntraOpThreads { get; set; } = 1;

    /// <summary>
    /// Most images sent to the model in one run; larger requests are split. 0 (default) picks by
    /// device: on the CPU small runs whose activations stay in the cache (2, measured in
    /// docs/BENCHMARKS.md), on CUDA 64.
    /// </summary>
    public int BatchSize { get; set; }

    /// <summary>
    /// Directory holding the ONNX Runtime native core (libonnxruntime.so or libonnxruntime.so.1) and,
    /// for CUDA, libonnxruntime_providers_cuda.so and libonnxruntime_providers_shared.so. Falls back
    /// to the <see cref="NativeDirectoryEnvironmentVariable"/> environment variable, then to the
    /// application's directory, where the build puts the CPU-only core.
    /// </summary>
    public string? OnnxRuntimeNativeDirectory { get; set; }

    /// <summary>True when <see cref="Device"/> asks for CUDA.</summary>
    internal bool UsesCuda => string.Equals(Device, CudaDevice, StringComparison.OrdinalIgnoreCase);

    /// <summary>The intra-op thread count actually used.</summary>
    internal int EffectiveIntraOpThreads => IntraOpThreads > 0 ? IntraOpThreads : Environment.ProcessorCount;

    /// <summary>The run size actually used.</summary>
    internal int EffectiveBatchSize => BatchSize > 0 ? BatchSize : UsesCuda ? 64 : 2;

    /// <summary>The intra-op thread count used for batches.</summary>
    internal int EffectiveBatchIntraOpThreads => BatchIntraOpThreads > 0 ? BatchIntraOpThreads : Environment.ProcessorCount;

    /// <summary>Every problem with these settings, empty when they are valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (string.IsNullOrWhiteSpace(ModelsDirectory))
        {
            errors.Add($"{SectionName}:{nameof(ModelsDirectory)} must be set.");
        }

        if (string.IsNullOrWhiteSpace(Model) || Model.AsSpan().IndexOfAny(['/', '\\']) >= 0 || Model is "." or "..")
        {
            errors.Add($"{SectionName}:{nameof(Model)} must be a model folder name (got '{Model}').");
        }

        if (!string.Equals(Device, CpuDevice, StringComparison.OrdinalIgnoreCase) && !UsesCuda)
        {
            errors.Add($"{SectionName}:{nameof(Device)} must be '{CpuDevice}' or '{CudaDevice}' (got '{Device}').");
        }

        if (CudaDeviceId < 0)
        {
            errors.Add(string.Create(CultureInfo.InvariantCulture, $"{SectionName}:{nameof(CudaDeviceId)} must be >= 0 (got {CudaDeviceId})."));
        }

        if (IntraOpThreads is < 0 or > 1024)
        {
            errors.Add(string.Create(CultureInfo.InvariantCulture, $"{SectionName}:{nameof(IntraOpThreads)} must be within [0, 1024] (got {IntraOpThreads}); 0 uses every processor."));
        }

        if (BatchIntraOpThreads is < 0 or > 1024)
        {
            errors.Add(string.Create(CultureInfo.InvariantCulture, $"{SectionName}:{nameof(BatchIntraOpThreads)} must be within [0, 1024] (got {BatchIntraOpThreads}); 0 uses every processor."));
        }

        if (BatchSize is < 0 or > 1024)
        {
            errors.Add(string.Create(CultureInfo.InvariantCulture, $"{SectionName}:{nameof(BatchSize)} must be within [0, 1024] (got {BatchSize}); 0 picks by device."));
        }

        if (OnnxRuntimeNativeDirectory is not null && string.IsNullOrWhiteSpace(OnnxRuntimeNativeDirectory))
        {
            errors.Add($"{SectionName}:{nameof(OnnxRuntimeNativeDirectory)} is blank; leave it unset to use the default.");
        }

        return errors;
    }

    /// <summary>Throws <see cref="OptionsValidationException"/> listing every problem, if any.</summary>
    internal void ThrowIfInvalid()
    {
        var errors = Validate();
        if (errors.Count > 0)
        {
            throw new OptionsValidationException(Options.DefaultName, typeof(EmbeddingOptions), errors);
        }
    }
}

/// <summary>Lets the options framework check <see cref="EmbeddingOptions"/> at start-up (ValidateOnStart).</summary>
internal sealed class EmbeddingOptionsValidator : IValidateOptions<EmbeddingOptions>
{
    public ValidateOptionsResult Validate(string? name, EmbeddingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var errors = options.Validate();
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
