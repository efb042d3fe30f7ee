namespace ImageSearch.Embedding;

/// <summary>
/// The requested execution device (or the ONNX Runtime native library it needs) cannot be used.
/// The message says what is missing and how to install it; it is meant to be shown to the user as is.
/// </summary>
public sealed class DeviceUnavailableException : Exception
{
    /// <summary>Creates the exception for <paramref name="device"/>.</summary>
    public DeviceUnavailableException(string device, string message, Exception? innerException = null)
        : base(message, innerException) => Device = device;

    /// <summary>Creates the exception with no device named.</summary>
    public DeviceUnavailableException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public DeviceUnavailableException(string message) : base(message)
    {
    }

    /// <summary>Creates the exception with a message and cause.</summary>
    public DeviceUnavailableException(string message, Exception innerException) : base(message, innerException)
    {
    }

    /// <summary>The device that was requested ("cpu", "cuda").</summary>
    public string Device { get; } = "";
}
