namespace ImageSearch.Core;

/// <summary>Why an input image was refused. Maps onto HTTP status codes and failure reasons.</summary>
public enum ImageErrorKind
{
    /// <summary>Empty input.</summary>
    Empty,

    /// <summary>Not an image format the decoder supports (HTTP 415).</summary>
    UnsupportedFormat,

    /// <summary>Recognised format but the data is corrupt or truncated (HTTP 400).</summary>
    Corrupt,

    /// <summary>More pixels or bytes than allowed (HTTP 413).</summary>
    TooLarge,

    /// <summary>The bounding box does not intersect the image (HTTP 400).</summary>
    InvalidBox,
}

/// <summary>
/// A permanent failure caused by the input itself: retrying cannot help. Consumers record it as a
/// failed image with <see cref="Exception.Message"/> as the reason; the HTTP API returns a 4xx.
/// </summary>
public sealed class InvalidImageException : Exception
{
    public InvalidImageException(ImageErrorKind kind, string message, Exception? inner = null)
        : base(message, inner) => Kind = kind;

    public InvalidImageException()
    {
    }

    public InvalidImageException(string message) : base(message)
    {
    }

    public InvalidImageException(string message, Exception innerException) : base(message, innerException)
    {
    }

    public ImageErrorKind Kind { get; } = ImageErrorKind.Corrupt;
}
