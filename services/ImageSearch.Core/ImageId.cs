using System.Security.Cryptography;

namespace ImageSearch.Core;

/// <summary>
/// Identity of an image derived from its bytes: the first 128 bits of SHA-256, as 32 lowercase hex
/// characters. Re-adding the same file (or a copy) yields the same id, so every step is idempotent.
/// 128 bits also map one-to-one onto a UUID, which is what Qdrant accepts as a point id.
/// </summary>
public readonly record struct ImageId
{
    private ImageId(string value) => Value = value;

    public string Value { get; }

    public static ImageId FromContent(ReadOnlySpan<byte> content) => FromContentHash(SHA256.HashData(content));

    /// <summary>Builds the id from a full SHA-256 digest.</summary>
    public static ImageId FromContentHash(ReadOnlySpan<byte> sha256)
    {
        if (sha256.Length != 32)
        {
            throw new ArgumentException("Expected a 32-byte SHA-256 digest.", nameof(sha256));
        }

        return new ImageId(Convert.ToHexStringLower(sha256[..16]));
    }

    public static bool TryParse(string? text, out ImageId id)
    {
        id = default;
        if (text is null || text.Length != 32)
        {
            return false;
        }

        foreach (var c in text)
        {
            if (c is not ((>= '0' and <= '9') or (>= 'a' and <= 'f')))
            {
                return false;
            }
        }

        id = new ImageId(text);
        return true;
    }

    public static ImageId Parse(string text) =>
        TryParse(text, out var id) ? id : throw new FormatException($"'{text}' is not an image id (32 lowercase hex characters).");

    /// <summary>The id as a UUID (for stores that need one).</summary>
    public Guid ToGuid() => Guid.ParseExact(Value, "N");

    public override string ToString() => Value;
}
