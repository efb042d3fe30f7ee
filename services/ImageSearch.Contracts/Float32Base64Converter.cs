using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace ImageSearch.Contracts;

/// <summary>
/// Writes a <c>float[]</c> as one base64 string of its IEEE 754 single-precision values,
/// little-endian, instead of a JSON array of numbers: a 512-value embedding is 2.7 KB instead of
/// about 6 KB, and is copied, not formatted and parsed number by number (parsing was about a quarter
/// of the indexer's CPU for each ImageEmbedded). Every value survives exactly, NaN and
/// infinities included. Reads both forms, so messages written as arrays (by an older worker, still
/// in a queue) are read as before.
/// </summary>
public sealed class Float32Base64Converter : JsonConverter<float[]>
{
    public override float[]? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        switch (reader.TokenType)
        {
            case JsonTokenType.Null:
                return null;
            case JsonTokenType.String:
                if (!reader.TryGetBytesFromBase64(out var bytes))
                {
                    throw new JsonException("A float array must be base64 text of little-endian single-precision values.");
                }

                if (bytes.Length % sizeof(float) != 0)
                {
                    throw new JsonException($"A float array's base64 holds {bytes.Length} bytes, not a multiple of {sizeof(float)}.");
                }

                var values = new float[bytes.Length / sizeof(float)];
                if (BitConverter.IsLittleEndian)
                {
                    bytes.CopyTo(MemoryMarshal.AsBytes(values.AsSpan()));
                }
                else
                {
                    for (var i = 0; i < values.Length; i++)
                    {
                        values[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(i * sizeof(float)));
                    }
                }

                return values;
            case JsonTokenType.StartArray:
                var list = new List<float>();
                while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                {
                    list.Add(reader.GetSingle());
                }

                return [.. list];
            default:
                throw new JsonException($"Expected a base64 string or an array of numbers for a float array, not {reader.TokenType}.");
        }
    }

    public override void Write(Utf8JsonWriter writer, float[] value, JsonSerializerOptions options)
    {
        if (BitConverter.IsLittleEndian)
        {
            writer.WriteBase64StringValue(MemoryMarshal.AsBytes(value.AsSpan()));
            return;
        }

        var bytes = new byte[value.Length * sizeof(float)];
        for (var i = 0; i < value.Length; i++)
        {
            BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * sizeof(float)), value[i]);
        }

        writer.WriteBase64StringValue(bytes);
    }
}
