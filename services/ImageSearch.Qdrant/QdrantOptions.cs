using System.Globalization;
using System.Text;
using ImageSearch.Core;
using Microsoft.Extensions.Options;

namespace ImageSearch.Qdrant;

/// <summary>Settings of a <see cref="QdrantVectorStore"/> (bindable from configuration).</summary>
public sealed class QdrantOptions
{
    /// <summary>Prefix of the collection names derived from a model key.</summary>
    public const string CollectionPrefix = "imagesearch_";

    /// <summary>
    /// Base address of Qdrant's REST API (port 6333 by default; not the gRPC port 6334). A path is
    /// kept, so a Qdrant behind a reverse proxy at <c>https://host/qdrant/</c> works.
    /// </summary>
    public string Url { get; set; } = "http://localhost:6333";

    /// <summary>Sent as the <c>api-key</c> header when set. Use https: the key travels in clear text otherwise.</summary>
    public string? ApiKey { get; set; }

    /// <summary>
    /// Collection name. Empty means <see cref="DefaultCollectionName"/> of the model, so a model change
    /// gets a new collection and never mixes vectors (as the embedded store gets a new folder).
    /// </summary>
    public string? Collection { get; set; }

    /// <summary>HNSW links per node (<c>hnsw_config.m</c>). Applied when the store creates the collection only.</summary>
    public int M { get; set; } = 16;

    /// <summary>HNSW build beam (<c>hnsw_config.ef_construct</c>). Applied when the store creates the collection only.</summary>
    public int EfConstruct { get; set; } = 200;

    /// <summary>Default HNSW search beam (<c>params.hnsw_ef</c>) when <see cref="VectorQuery.Ef"/> is 0.</summary>
    public int EfSearch { get; set; } = 64;

    /// <summary>
    /// Create the collection with <c>on_disk_payload</c> (payloads read from disk; saves RAM). On by
    /// default: each point's payload carries its local features (about 28 KB), read only for the top
    /// candidates of a re-ranked query, which is too much to hold in memory for a large collection.
    /// </summary>
    public bool OnDiskPayload { get; set; } = true;

    /// <summary>Limit for one HTTP request, response body included. A timed-out write may still have been applied.</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Points per upsert request (and ids per delete). Qdrant refuses request bodies over its
    /// <c>service.max_request_size_mb</c> (32 MB by default); a point takes about 11 bytes per dimension
    /// as JSON, so 256 points of 2048 dimensions are about 6 MB.
    /// </summary>
    public int UpsertBatchSize { get; set; } = 256;

    /// <summary>
    /// "imagesearch_" + the model key with every character other than ASCII letters, digits, '-' and '_'
    /// replaced by '_': "inception-v3-mixed7@1+cal.0a1b" gives "imagesearch_inception-v3-mixed7_1_cal_0a1b".
    /// Two keys may map to one name; the manifest point (see <see cref="QdrantVectorStore"/>) catches that.
    /// </summary>
    public static string DefaultCollectionName(EmbeddingModelInfo model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var name = new StringBuilder(CollectionPrefix, CollectionPrefix.Length + model.Key.Length);
        foreach (var c in model.Key)
        {
            name.Append(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' ? c : '_');
        }

        return name.ToString();
    }

    /// <summary>The collection this store uses for <paramref name="model"/>.</summary>
    public string ResolveCollection(EmbeddingModelInfo model) =>
        string.IsNullOrWhiteSpace(Collection) ? DefaultCollectionName(model) : Collection;

    /// <summary>Problems with the settings; empty when valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (!Uri.TryCreate(Url, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
        {
            errors.Add($"Url must be an absolute http or https address (was '{Url}').");
        }
        else if (!string.IsNullOrEmpty(uri.Query) || !string.IsNullOrEmpty(uri.Fragment))
        {
            errors.Add($"Url must not have a query or fragment (was '{Url}').");
        }

        // Stricter than Qdrant (which refuses only path separators and a few punctuation marks), so
        // the name is also safe in a URL path segment, a file name and a metric label.
        if (!string.IsNullOrWhiteSpace(Collection) &&
            (Collection.Length > 255 || Collection.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))))
        {
            errors.Add($"Collection must be 1-255 ASCII letters, digits, '-', '_' or '.' (was '{Collection}').");
        }

        Check(errors, M, 2, 256, nameof(M));
        Check(errors, EfConstruct, 4, 10_000, nameof(EfConstruct));
        Check(errors, EfSearch, 1, 10_000, nameof(EfSearch));
        Check(errors, UpsertBatchSize, 1, 10_000, nameof(UpsertBatchSize));
        if (Timeout <= TimeSpan.Zero || Timeout > TimeSpan.FromMinutes(10))
        {
            errors.Add($"Timeout must be more than 0 and at most 10 minutes (was {Timeout.ToString("c", CultureInfo.InvariantCulture)}).");
        }

        return errors;
    }

    internal void ThrowIfInvalid()
    {
        var errors = Validate();
        if (errors.Count > 0)
        {
            throw new OptionsValidationException(nameof(QdrantOptions), typeof(QdrantOptions), errors);
        }
    }

    private static void Check(List<string> errors, int value, int min, int max, string name)
    {
        if (value < min || value > max)
        {
            errors.Add($"{name} must be in {min}..{max} (was {value}).");
        }
    }
}

/// <summary>Runs <see cref="QdrantOptions.Validate"/> for the options pipeline (and ValidateOnStart).</summary>
internal sealed class QdrantOptionsValidator : IValidateOptions<QdrantOptions>
{
    public ValidateOptionsResult Validate(string? name, QdrantOptions options)
    {
        var errors = options.Validate();
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
