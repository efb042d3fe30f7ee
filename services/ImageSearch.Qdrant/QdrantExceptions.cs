using System.Net;

namespace ImageSearch.Qdrant;

/// <summary>
/// Qdrant refused a request or answered something the store cannot use. Retrying the same request
/// will not help (a 4xx answer, an unexpected response body); see <see cref="QdrantUnavailableException"/>
/// for failures worth retrying.
/// </summary>
public class QdrantException : Exception
{
    public QdrantException()
    {
    }

    public QdrantException(string message)
        : base(message)
    {
    }

    public QdrantException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Creates the exception for an answer from the server.</summary>
    /// <param name="message">What failed, for people.</param>
    /// <param name="statusCode">HTTP status of the answer, if there was one.</param>
    /// <param name="serverError">Qdrant's own error text (<c>status.error</c> of its error body), if it sent one.</param>
    /// <param name="innerException">The underlying failure, if any.</param>
    public QdrantException(string message, HttpStatusCode? statusCode, string? serverError, Exception? innerException = null)
        : base(message, innerException)
    {
        StatusCode = statusCode;
        ServerError = serverError;
    }

    /// <summary>HTTP status of Qdrant's answer; null when none came (connection failure, timeout).</summary>
    public HttpStatusCode? StatusCode { get; }

    /// <summary>The <c>status.error</c> text of Qdrant's error body, e.g. "Not found: Collection `x` doesn't exist!".</summary>
    public string? ServerError { get; }
}

/// <summary>
/// Qdrant could not be reached or could not serve the request for now: connection refused or reset,
/// DNS failure, the <see cref="QdrantOptions.Timeout"/> elapsed (then <see cref="Exception.InnerException"/>
/// is a <see cref="TimeoutException"/>), HTTP 429 or any 5xx. Callers (a message consumer, a retry policy)
/// may retry: every store operation is idempotent. A write that failed this way may or may not have been
/// applied.
/// </summary>
public sealed class QdrantUnavailableException : QdrantException
{
    public QdrantUnavailableException()
    {
    }

    public QdrantUnavailableException(string message)
        : base(message)
    {
    }

    public QdrantUnavailableException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }

    /// <inheritdoc cref="QdrantException(string, HttpStatusCode?, string?, Exception?)"/>
    public QdrantUnavailableException(string message, HttpStatusCode? statusCode, string? serverError, Exception? innerException = null)
        : base(message, statusCode, serverError, innerException)
    {
    }
}
