namespace ImageSearch.Embedding.Tests;

/// <summary>This machine has no GPU and its ONNX Runtime core is CPU-only: CUDA must fail clearly, never fall back.</summary>
public class DeviceTests
{
    [Fact]
    public void Cuda_WithTheCpuOnlyCore_FailsSayingWhatToInstall()
    {
        var options = TestSupport.TinyOptions();
        options.Device = "cuda";

        var error = Assert.Throws<DeviceUnavailableException>(() => new OnnxEmbedder(options));

        Assert.Equal("cuda", error.Device);
        Assert.Contains("was built without CUDA", error.Message, StringComparison.Ordinal);
        Assert.Contains("./imagesearch setup --gpu", error.Message, StringComparison.Ordinal);
        Assert.Contains("ORT_NATIVE_DIR", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Cuda_WithAMissingNativeDirectory_NamesTheDirectory()
    {
        using var temp = new TestSupport.TempDirectory();
        var options = TestSupport.TinyOptions();
        options.Device = "CUDA";
        options.OnnxRuntimeNativeDirectory = Path.Combine(temp.Path, "onnxruntime-gpu");

        var error = Assert.Throws<DeviceUnavailableException>(() => new OnnxEmbedder(options));

        Assert.Contains($"was not found in {options.OnnxRuntimeNativeDirectory}", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Cpu_WithTheApplicationDirectoryNamedExplicitly_Works()
    {
        var options = TestSupport.TinyOptions();
        options.OnnxRuntimeNativeDirectory = AppContext.BaseDirectory;

        using var embedder = new OnnxEmbedder(options);

        Assert.Equal("cpu", embedder.Device);
    }
}
