using System.Reflection;
using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;

namespace ImageSearch.Embedding;

/// <summary>
/// Decides which ONNX Runtime native core the process uses and makes the Microsoft.ML.OnnxRuntime
/// assembly bind to it.
/// </summary>
/// <remarks>
/// <para>
/// The managed API imports its functions from "onnxruntime". Left alone, its own resolver would
/// probe the application directory, where the build copies the CPU-only core. To run on CUDA the
/// process must load a CUDA-enabled core instead, and ONNX Runtime then finds its execution-provider
/// libraries (libonnxruntime_providers_cuda.so, libonnxruntime_providers_shared.so) in the directory
/// that core was loaded from. So the core is loaded here by full path from the chosen directory and a
/// DllImportResolver hands that handle to the assembly.
/// </para>
/// <para>
/// Limits: a process binds to one core for its lifetime (P/Invoke bindings cannot be redirected
/// once made), so every embedder in a process must use the same directory; and this must run
/// before any other ONNX Runtime call, which holds as long as only <see cref="OnnxEmbedder"/> uses
/// ONNX Runtime.
/// </para>
/// </remarks>
internal static class OnnxRuntimeNativeLibrary
{
    /// <summary>The library name the managed API's DllImports use.</summary>
    private const string ImportName = "onnxruntime";

    private static readonly Lock Gate = new();
    private static string? loadedPath;
    private static IntPtr loadedHandle;

    /// <summary>Core file names tried in a directory, in order (onnxruntime-node ships only the .so.1 name).</summary>
    internal static IReadOnlyList<string> CoreFileNames { get; } =
        OperatingSystem.IsWindows() ? ["onnxruntime.dll"]
        : OperatingSystem.IsMacOS() ? ["libonnxruntime.dylib"]
        : ["libonnxruntime.so", "libonnxruntime.so.1"];

    /// <summary>The CUDA execution-provider library that must sit beside a CUDA-enabled core.</summary>
    internal static string CudaProviderFileName { get; } =
        OperatingSystem.IsWindows() ? "onnxruntime_providers_cuda.dll" : "libonnxruntime_providers_cuda.so";

    /// <summary>The provider bridge library every shared-library execution provider needs.</summary>
    internal static string SharedProviderFileName { get; } =
        OperatingSystem.IsWindows() ? "onnxruntime_providers_shared.dll" : "libonnxruntime_providers_shared.so";

    /// <summary>
    /// The directory to load from: the configured one, else $ORT_NATIVE_DIR, else the application
    /// directory. Returns a full path and whether it was chosen explicitly.
    /// </summary>
    public static (string Directory, bool Explicit) ResolveDirectory(string? configured)
    {
        if (!string.IsNullOrWhiteSpace(configured))
        {
            return (Path.GetFullPath(configured), true);
        }

        var fromEnvironment = Environment.GetEnvironmentVariable(EmbeddingOptions.NativeDirectoryEnvironmentVariable);
        return !string.IsNullOrWhiteSpace(fromEnvironment)
            ? (Path.GetFullPath(fromEnvironment), true)
            : (Path.GetFullPath(AppContext.BaseDirectory), false);
    }

    /// <summary>
    /// Loads the core from <paramref name="directory"/> and binds the managed API to it, or checks
    /// that the core already bound is that one. Returns the core's full path.
    /// </summary>
    /// <exception cref="DeviceUnavailableException">No loadable core in the directory, or another core is already bound.</exception>
    public static string EnsureLoaded(string directory, bool explicitDirectory, string device)
    {
        var path = CoreFileNames.Select(name => Path.Combine(directory, name)).FirstOrDefault(File.Exists);
        if (path is null)
        {
            var where = explicitDirectory
                ? $"in {directory} (set by {EmbeddingOptions.SectionName}:{nameof(EmbeddingOptions.OnnxRuntimeNativeDirectory)} or {EmbeddingOptions.NativeDirectoryEnvironmentVariable})"
                : $"next to the application in {directory} (the build copies it there from node_modules: run `./imagesearch setup` and rebuild)";
            throw new DeviceUnavailableException(device,
                $"The ONNX Runtime native library ({string.Join(" or ", CoreFileNames)}) was not found {where}.");
        }

        lock (Gate)
        {
            if (loadedPath is not null)
            {
                if (!string.Equals(loadedPath, path, StringComparison.Ordinal))
                {
                    throw new DeviceUnavailableException(device,
                        $"This process already uses the ONNX Runtime library {loadedPath}; it cannot switch to {path}. " +
                        "Use one native directory per process.");
                }

                return path;
            }

            IntPtr handle;
            try
            {
                handle = NativeLibrary.Load(path);
            }
            catch (DllNotFoundException ex)
            {
                // The message carries the loader's reason (missing dependency, wrong architecture).
                throw new DeviceUnavailableException(device, $"The ONNX Runtime library {path} could not be loaded: {ex.Message}", ex);
            }

            // The managed API's own resolver must stay out of the way; it is consulted only if this flag is false.
            OrtEnv.DisableDllImportResolver = true;
            loadedHandle = handle;
            try
            {
                NativeLibrary.SetDllImportResolver(typeof(OrtEnv).Assembly, Resolve);
            }
            catch (InvalidOperationException ex)
            {
                loadedHandle = IntPtr.Zero;
                NativeLibrary.Free(handle);
                throw new DeviceUnavailableException(device,
                    "ONNX Runtime was initialised before the embedder could choose its native library " +
                    "(something else installed a DllImportResolver for Microsoft.ML.OnnxRuntime). Create the embedder first.", ex);
            }

            loadedPath = path;
            return path;
        }
    }

    private static IntPtr Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath) =>
        libraryName == ImportName ? loadedHandle : IntPtr.Zero;
}
