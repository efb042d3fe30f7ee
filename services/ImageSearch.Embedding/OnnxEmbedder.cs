using System.Buffers;
using System.Globalization;
using System.Security.Cryptography;
using ImageSearch.Core;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace ImageSearch.Embedding;

/// <summary>
/// <see cref="IEmbedder"/> that runs an exported CNN with ONNX Runtime. The model folder
/// (<c>ModelsDirectory/Model</c>) holds model.onnx, its model.json and optionally the
/// <see cref="Embedding.Calibration"/> file; vectors are the raw pooled features, centred and
/// whitened by that calibration, then L2-normalised.
/// </summary>
/// <remarks>
/// Sessions are thread-safe (Run may be called concurrently); each call packs its own input buffer.
/// On the CPU there are two sessions over the same model, chosen by the size of the call: a single
/// image (a query) runs on the latency session, which spreads each operator over
/// <see cref="EmbeddingOptions.IntraOpThreads"/> threads; a batch (ingestion) runs on the
/// throughput session with <see cref="EmbeddingOptions.BatchIntraOpThreads"/> threads, by default
/// one, so that concurrent batches each keep one core busy instead of meeting at a barrier after
/// every operator (measured in docs/BENCHMARKS.md: on 2 cores an intra-op-parallel run lost half
/// its speed to a decoder sharing the cores). The throughput session is created on first use.
/// Disposing while calls are in flight is not supported.
/// </remarks>
public sealed class OnnxEmbedder : IEmbedder
{
    private const string CudaProviderName = "CUDAExecutionProvider";
    private const string GpuSetupHint = "To use the GPU run `./imagesearch setup --gpu`, which installs the CUDA-enabled ONNX Runtime " +
        $"(core plus CUDA providers, for CUDA 13 and cuDNN 9), and set {EmbeddingOptions.SectionName}:{nameof(EmbeddingOptions.OnnxRuntimeNativeDirectory)} " +
        $"or {EmbeddingOptions.NativeDirectoryEnvironmentVariable} to the directory it installs to; or set {EmbeddingOptions.SectionName}:{nameof(EmbeddingOptions.Device)}=cpu.";

    private readonly ILogger logger;
    private readonly ModelManifest manifest;
    private readonly SessionOptions sessionOptions;
    private readonly InferenceSession session;
    private readonly SessionOptions? batchSessionOptions;
    private readonly Lock batchSessionLock = new();
    private readonly string modelPath;
    private readonly EmbeddingOptions options;
    private readonly WorkPriorities? priorities;
    private InferenceSession? batchSession;
    private readonly string[] inputNames;
    private readonly string[] outputNames;
    private readonly int batchSize;
    private int disposed;

    /// <summary>
    /// Loads the model named by <paramref name="options"/> and prepares it on the requested device.
    /// </summary>
    /// <exception cref="Microsoft.Extensions.Options.OptionsValidationException">Invalid options.</exception>
    /// <exception cref="FileNotFoundException">The model folder lacks model.json or model.onnx.</exception>
    /// <exception cref="InvalidDataException">The manifest, model or calibration file is malformed or does not match.</exception>
    /// <exception cref="DeviceUnavailableException">The native library or the requested device cannot be used.</exception>
    public OnnxEmbedder(EmbeddingOptions options, ILogger<OnnxEmbedder>? logger = null)
        : this(options, logger, null)
    {
    }

    /// <summary>
    /// Loads the model as <see cref="OnnxEmbedder(EmbeddingOptions, ILogger{OnnxEmbedder})"/> does, and
    /// starts ONNX Runtime's threads at the nice values of <paramref name="priorities"/>: the latency
    /// session's at <see cref="WorkPriorities.QueryModelNice"/>, the throughput session's at
    /// <see cref="WorkPriorities.IngestionNice"/> (each session is created on a thread of that level,
    /// whose level its intra-op threads inherit). The thread that calls <see cref="Embed(IReadOnlyList{RgbImage}, EmbeddingWorkload)"/>
    /// also works on the run, at its own level. Null: the creating thread's level.
    /// </summary>
    public OnnxEmbedder(EmbeddingOptions options, ILogger<OnnxEmbedder>? logger, WorkPriorities? priorities)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.ThrowIfInvalid();
        this.logger = logger ?? (ILogger)NullLogger.Instance;
        batchSize = options.EffectiveBatchSize;
        Device = options.UsesCuda ? EmbeddingOptions.CudaDevice : EmbeddingOptions.CpuDevice;

        ModelDirectory = Path.GetFullPath(Path.Combine(options.ModelsDirectory, options.Model));
        manifest = LoadManifest(ModelDirectory, options.Model);
        var modelPath = Path.Combine(ModelDirectory, ModelManifest.ModelFileName);
        VerifyModelHash(modelPath, manifest);

        var (nativeDirectory, explicitDirectory) = OnnxRuntimeNativeLibrary.ResolveDirectory(options.OnnxRuntimeNativeDirectory);
        NativeLibraryPath = OnnxRuntimeNativeLibrary.EnsureLoaded(nativeDirectory, explicitDirectory, Device);

        inputNames = [manifest.Input.Name];
        outputNames = [manifest.Output.Name];
        RawModel = new EmbeddingModelInfo(manifest.Name, manifest.Version, manifest.Output.Dimensions, manifest.Input.Width, manifest.Input.Height);
        sessionOptions = CreateSessionOptions(options, nativeDirectory, options.EffectiveIntraOpThreads);
        // One session serves both workloads when they would be configured alike, unless their
        // intra-op threads must run at different levels.
        var sameLevel = priorities is null || priorities.QueryModelNice == priorities.IngestionNice || options.EffectiveBatchIntraOpThreads == 1;
        batchSessionOptions = options.UsesCuda || (options.EffectiveBatchIntraOpThreads == options.EffectiveIntraOpThreads && sameLevel)
            ? null
            : CreateSessionOptions(options, nativeDirectory, options.EffectiveBatchIntraOpThreads);
        this.modelPath = modelPath;
        this.options = options;
        this.priorities = priorities;
        try
        {
            session = CreateSession(modelPath, options, sessionOptions, priorities?.QueryModelNice, "onnx-query");
            CheckSignature();
            Calibration = LoadCalibration();
        }
        catch
        {
            session?.Dispose();
            sessionOptions.Dispose();
            batchSessionOptions?.Dispose();
            throw;
        }

        // A new calibration changes every vector, so it is part of the model identity an index records.
        Model = Calibration is null
            ? RawModel
            : RawModel with { Version = $"{manifest.Version}+cal.{Calibration.Fingerprint}", Dimensions = Calibration.OutputDimensions };

        this.logger.LogInformation(
            "Embedding model {Model} ({Dimensions}-d, input {Width}x{Height}) runs on {Device} with {Threads} intra-op threads per query and {BatchThreads} per batch, batch {BatchSize}; ONNX Runtime {OrtVersion} from {NativeLibrary}",
            Model.Key, Model.Dimensions, Model.InputWidth, Model.InputHeight, Device, options.EffectiveIntraOpThreads,
            batchSessionOptions is null ? options.EffectiveIntraOpThreads : options.EffectiveBatchIntraOpThreads, batchSize,
            OrtEnv.Instance().GetVersionString(), NativeLibraryPath);
        if (Calibration is null)
        {
            this.logger.LogWarning(
                "Model {Model} has no {CalibrationFile}: vectors are only L2-normalised, not centred, so unrelated images score high; calibrate the model",
                Model.Key, Calibration.FileName);
        }
        else
        {
            this.logger.LogInformation("Using calibration {Calibration}", Calibration.ToString());
        }
    }

    /// <summary>The model as indexed: dimensions after calibration, version suffixed with the calibration fingerprint.</summary>
    public EmbeddingModelInfo Model { get; }

    /// <summary>The model as exported: raw output dimensions, manifest version. Calibrations are fitted against its key.</summary>
    public EmbeddingModelInfo RawModel { get; }

    /// <summary>"cpu" or "cuda": the device the model runs on (CUDA never silently falls back to the CPU).</summary>
    public string Device { get; }

    /// <summary>The calibration applied by <see cref="Embed(IReadOnlyList{RgbImage})"/>, or null when the model folder has none.</summary>
    public Calibration? Calibration { get; }

    /// <summary>Full path of the model folder.</summary>
    public string ModelDirectory { get; }

    /// <summary>Where <see cref="Embedding.Calibration.Save"/> should write a calibration for this model.</summary>
    public string CalibrationPath => string.IsNullOrEmpty(options.CalibrationFile)
        ? Path.Combine(ModelDirectory, Calibration.FileName)
        : Path.GetFullPath(options.CalibrationFile);

    /// <summary>Full path of the ONNX Runtime native core the process uses.</summary>
    public string NativeLibraryPath { get; }

    /// <summary>Embeds a batch into unit-length vectors: one image on the latency session, several on the throughput session.</summary>
    public float[][] Embed(IReadOnlyList<RgbImage> images) =>
        Embed(images, images?.Count > 1 ? EmbeddingWorkload.Throughput : EmbeddingWorkload.Latency);

    /// <summary>Embeds a batch into unit-length vectors on the session <paramref name="workload"/> names.</summary>
    public float[][] Embed(IReadOnlyList<RgbImage> images, EmbeddingWorkload workload)
    {
        var vectors = EmbedRaw(images, workload);
        for (var i = 0; i < vectors.Length; i++)
        {
            if (Calibration is null)
            {
                Calibration.Normalise(vectors[i]);
            }
            else
            {
                vectors[i] = Calibration.Apply(vectors[i]);
            }
        }

        return vectors;
    }

    /// <summary>
    /// The model's raw output for each image (<see cref="RawModel"/> dimensions, not centred or
    /// normalised): the input <see cref="Embedding.Calibration.Fit"/> learns from.
    /// </summary>
    /// <exception cref="ArgumentException">An image is not <see cref="EmbeddingModelInfo.InputWidth"/> x <see cref="EmbeddingModelInfo.InputHeight"/> RGB.</exception>
    public float[][] EmbedRaw(IReadOnlyList<RgbImage> images) =>
        EmbedRaw(images, images?.Count > 1 ? EmbeddingWorkload.Throughput : EmbeddingWorkload.Latency);

    /// <summary>The raw output (see <see cref="EmbedRaw(IReadOnlyList{RgbImage})"/>) computed on the session <paramref name="workload"/> names.</summary>
    public float[][] EmbedRaw(IReadOnlyList<RgbImage> images, EmbeddingWorkload workload)
    {
        ArgumentNullException.ThrowIfNull(images);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref disposed) != 0, this);
        var width = manifest.Input.Width;
        var height = manifest.Input.Height;
        for (var i = 0; i < images.Count; i++)
        {
            var image = images[i] ?? throw new ArgumentException($"Image {i} is null.", nameof(images));
            if (image.Width != width || image.Height != height || image.Pixels is null || image.Pixels.Length != width * height * 3)
            {
                throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                    $"Image {i} is {image.Width}x{image.Height} with {image.Pixels?.Length ?? 0} bytes; model {RawModel.Key} takes {width}x{height} RGB ({width * height * 3} bytes)."),
                    nameof(images));
            }
        }

        var result = new float[images.Count][];
        var runner = workload == EmbeddingWorkload.Throughput ? BatchSession() : session;
        for (var start = 0; start < images.Count; start += batchSize)
        {
            RunBatch(runner, images, start, Math.Min(batchSize, images.Count - start), result);
        }

        return result;
    }

    /// <summary>
    /// The throughput session, created on first use (a query-only process never pays for it). A
    /// failed creation is not remembered: the next batch tries again.
    /// </summary>
    private InferenceSession BatchSession()
    {
        if (batchSessionOptions is null)
        {
            return session;
        }

        if (Volatile.Read(ref batchSession) is { } ready)
        {
            return ready;
        }

        lock (batchSessionLock)
        {
            return batchSession ??= CreateSession(modelPath, options, batchSessionOptions, priorities?.IngestionNice, "onnx-batch");
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (Interlocked.Exchange(ref disposed, 1) != 0)
        {
            return;
        }

        if (batchSessionOptions is not null)
        {
            batchSession?.Dispose();

            batchSessionOptions.Dispose();
        }

        session.Dispose();
        sessionOptions.Dispose();
    }

    private void RunBatch(InferenceSession runner, IReadOnlyList<RgbImage> images, int start, int count, float[][] result)
    {
        var imageLength = 3 * manifest.Input.Width * manifest.Input.Height;
        var dims = manifest.Output.Dimensions;
        var input = ArrayPool<float>.Shared.Rent(count * imageLength);
        var output = ArrayPool<float>.Shared.Rent(count * dims);
        try
        {
            for (var i = 0; i < count; i++)
            {
                NchwPacker.Pack(images[start + i].Pixels, input.AsSpan(i * imageLength, imageLength));
            }

            using var inputValue = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance,
                input.AsMemory(0, count * imageLength), [count, 3, manifest.Input.Height, manifest.Input.Width]);
            using var outputValue = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance,
                output.AsMemory(0, count * dims), [count, dims]);
            runner.Run(null, inputNames, [inputValue], outputNames, [outputValue]);

            for (var i = 0; i < count; i++)
            {
                result[start + i] = output.AsSpan(i * dims, dims).ToArray();
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(input);
            ArrayPool<float>.Shared.Return(output);
        }
    }

    private static ModelManifest LoadManifest(string directory, string name)
    {
        var manifestPath = Path.Combine(directory, ModelManifest.FileName);
        var modelPath = Path.Combine(directory, ModelManifest.ModelFileName);
        foreach (var required in (string[])[manifestPath, modelPath])
        {
            if (!File.Exists(required))
            {
                throw new FileNotFoundException(
                    $"Model '{name}' is not installed: {required} is missing. Models are exported by `./imagesearch setup`.", required);
            }
        }

        var manifest = ModelManifest.Load(manifestPath);
        if (manifest.Name != name)
        {
            throw new InvalidDataException($"{manifestPath} describes model '{manifest.Name}', but it sits in the folder of '{name}'.");
        }

        return manifest;
    }

    /// <summary>Catches a truncated download or a model.onnx from another export before it yields wrong vectors.</summary>
    private static void VerifyModelHash(string modelPath, ModelManifest manifest)
    {
        using var stream = File.OpenRead(modelPath);
        var actual = Convert.ToHexStringLower(SHA256.HashData(stream));
        if (!string.Equals(actual, manifest.Sha256, StringComparison.OrdinalIgnoreCase))
        {
            throw new InvalidDataException(
                $"{modelPath} has SHA-256 {actual}, but its model.json expects {manifest.Sha256}: the file is damaged or from another export. Export the model again.");
        }
    }

    private SessionOptions CreateSessionOptions(EmbeddingOptions options, string nativeDirectory, int intraOpThreads)
    {
        var result = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            IntraOpNumThreads = intraOpThreads,
            // The graphs are a single chain of operators: there is nothing to run in parallel between them.
            InterOpNumThreads = 1,
        };
        if (!options.UsesCuda)
        {
            // Decoding shares these cores during ingestion: ONNX Runtime's idle intra-op threads would
            // otherwise spin-wait on them between runs instead of yielding to the decoder.
            result.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");
            return result;
        }

        try
        {
            AppendCuda(result, options.CudaDeviceId, nativeDirectory);
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    private void AppendCuda(SessionOptions target, int deviceId, string nativeDirectory)
    {
        var providers = OrtEnv.Instance().GetAvailableProviders();
        if (!providers.Contains(CudaProviderName))
        {
            throw new DeviceUnavailableException(Device,
                $"Device 'cuda' was requested, but the ONNX Runtime library {NativeLibraryPath} (version {OrtEnv.Instance().GetVersionString()}) " +
                $"was built without CUDA (it offers {string.Join(", ", providers)}). {GpuSetupHint}");
        }

        foreach (var name in (string[])[OnnxRuntimeNativeLibrary.CudaProviderFileName, OnnxRuntimeNativeLibrary.SharedProviderFileName])
        {
            if (!File.Exists(Path.Combine(nativeDirectory, name)))
            {
                throw new DeviceUnavailableException(Device,
                    $"Device 'cuda' was requested, but {name} is missing from {nativeDirectory}; ONNX Runtime loads its CUDA provider from the core's directory. {GpuSetupHint}");
            }
        }

        try
        {
            // The V2 entry point goes through the API function table; the legacy exported
            // OrtSessionOptionsAppendExecutionProvider_CUDA symbol is absent from some builds.
            using var cudaOptions = new OrtCUDAProviderOptions();
            cudaOptions.UpdateOptions(new Dictionary<string, string> { ["device_id"] = deviceId.ToString(CultureInfo.InvariantCulture) });
            target.AppendExecutionProvider_CUDA(cudaOptions);
        }
        catch (OnnxRuntimeException ex)
        {
            // Typically the provider's CUDA/cuDNN dependencies are not on the loader path; ORT's message names the library.
            throw new DeviceUnavailableException(Device,
                $"The CUDA execution provider in {nativeDirectory} could not be loaded: {ex.Message}. It needs the CUDA 13 runtime " +
                "(libcudart, libcublas, libcublasLt, libcufft, libcurand) and cuDNN 9 on the library path (ldconfig or LD_LIBRARY_PATH) " +
                $"and an NVIDIA driver that supports CUDA 13. {GpuSetupHint}", ex);
        }
    }

    /// <summary>Creates a session; with a <paramref name="nice"/> level, on a new thread of that level named <paramref name="threadName"/>, whose level ONNX Runtime's threads inherit.</summary>
    private InferenceSession CreateSession(string modelPath, EmbeddingOptions options, SessionOptions with, int? nice, string threadName) =>
        nice is { } level
            ? ThreadNice.RunOnNewThread(level, threadName, () => CreateSession(modelPath, options, with))
            : CreateSession(modelPath, options, with);

    private InferenceSession CreateSession(string modelPath, EmbeddingOptions options, SessionOptions with)
    {
        try
        {
            return new InferenceSession(modelPath, with);
        }
        catch (OnnxRuntimeException ex) when (options.UsesCuda)
        {
            throw new DeviceUnavailableException(Device,
                string.Create(CultureInfo.InvariantCulture,
                    $"The CUDA execution provider could not start on GPU {options.CudaDeviceId}: {ex.Message}. Check that the GPU is visible (nvidia-smi) ") +
                $"and that the NVIDIA driver supports CUDA 13. {GpuSetupHint}", ex);
        }
        catch (OnnxRuntimeException ex)
        {
            throw new InvalidDataException($"ONNX Runtime cannot load {modelPath}: {ex.Message}", ex);
        }
    }

    /// <summary>Checks that the graph takes and returns what model.json promises, so a mismatch fails here, not per batch.</summary>
    private void CheckSignature()
    {
        var modelPath = Path.Combine(ModelDirectory, ModelManifest.ModelFileName);
        var input = manifest.Input;
        var output = manifest.Output;
        if (!session.InputMetadata.TryGetValue(input.Name, out var inputMeta) || session.InputMetadata.Count != 1)
        {
            throw new InvalidDataException($"{modelPath} must have exactly one input, named '{input.Name}'; it has {string.Join(", ", session.InputMetadata.Keys)}.");
        }

        if (!session.OutputMetadata.TryGetValue(output.Name, out var outputMeta))
        {
            throw new InvalidDataException($"{modelPath} has no output named '{output.Name}'; it has {string.Join(", ", session.OutputMetadata.Keys)}.");
        }

        // Dimension -1 is symbolic (the batch); fixed sizes must match the manifest.
        var expectedInput = new[] { -1, 3, input.Height, input.Width };
        var expectedOutput = new[] { -1, output.Dimensions };
        if (!Matches(inputMeta, expectedInput) || !Matches(outputMeta, expectedOutput))
        {
            throw new InvalidDataException(
                $"{modelPath} takes {Describe(inputMeta)} and returns {Describe(outputMeta)}; model.json promises float[N,3,{input.Height},{input.Width}] -> float[N,{output.Dimensions}].");
        }
    }

    private static bool Matches(NodeMetadata metadata, int[] expected) =>
        metadata.IsTensor
        && metadata.ElementDataType == TensorElementType.Float
        && metadata.Dimensions.Length == expected.Length
        && metadata.Dimensions.Zip(expected).All(pair => pair.Second == -1 || pair.First == -1 || pair.First == pair.Second);

    private static string Describe(NodeMetadata metadata) =>
        metadata.IsTensor
            ? $"{metadata.ElementDataType}[{string.Join(",", metadata.Dimensions.Select(d => d < 0 ? "?" : d.ToString(CultureInfo.InvariantCulture)))}]"
            : metadata.OnnxValueType.ToString();

    private Calibration? LoadCalibration()
    {
        var path = CalibrationPath;
        if (!File.Exists(path))
        {
            return string.IsNullOrEmpty(options.CalibrationFile)
                ? null
                : throw new FileNotFoundException($"Embedding:CalibrationFile '{path}' does not exist.", path);
        }

        var calibration = Calibration.Load(path);
        if (calibration.ModelKey != RawModel.Key || calibration.InputDimensions != RawModel.Dimensions)
        {
            throw new InvalidDataException(string.Create(CultureInfo.InvariantCulture,
                $"{path} was fitted for {calibration.ModelKey} ({calibration.InputDimensions}-d), not {RawModel.Key} ({RawModel.Dimensions}-d). Delete it and calibrate again."));
        }

        return calibration;
    }
}
