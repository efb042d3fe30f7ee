using System.Text.Json;
using ImageSearch.Contracts;
using MassTransit.Serialization;

namespace ImageSearch.Pipeline.IntegrationTests;

public sealed class ContractTests
{
    [Fact]
    public void An_ImageEmbedded_from_before_VectorStored_reads_as_carrying_its_vector()
    {
        const string json = """
            {"path":"a.jpg","imageId":"0123456789abcdef0123456789abcdef","vector":[0.6,0.8],"modelKey":"m@1",
             "sizeBytes":10,"width":3,"height":2,"contentHash":"00","modifiedAt":"2025-01-02T03:04:05+00:00"}
            """;

        var message = JsonSerializer.Deserialize<ImageEmbedded>(json, SystemTextJsonMessageSerializer.Options)!;

        Assert.False(message.VectorStored);
        Assert.Equal([0.6f, 0.8f], message.Vector);
        Assert.Equal(("a.jpg", 3, 2), (message.Path, message.Width, message.Height));
    }

    [Fact]
    public void A_stored_vector_round_trips_as_a_flag_and_an_empty_vector()
    {
        var sent = new ImageEmbedded("a.jpg", "0123456789abcdef0123456789abcdef", [], "m@1", 10, 3, 2, "00", DateTimeOffset.UnixEpoch, VectorStored: true);

        var json = JsonSerializer.Serialize(sent, SystemTextJsonMessageSerializer.Options);
        var received = JsonSerializer.Deserialize<ImageEmbedded>(json, SystemTextJsonMessageSerializer.Options)!;

        Assert.True(received.VectorStored);
        Assert.Empty(received.Vector);
        using var document = JsonDocument.Parse(json);
        Assert.True(document.RootElement.GetProperty("vectorStored").GetBoolean());
    }

    [Fact]
    public void A_vector_travels_as_base64_of_its_little_endian_floats_and_every_value_survives_exactly()
    {
        float[] vector = [0.1f, -1e-38f, float.Epsilon, 3.4028235e38f, -0f, float.NaN, float.PositiveInfinity, 1f / 3];
        var sent = new ImageEmbedded("a.jpg", "0123456789abcdef0123456789abcdef", vector, "m@1", 10, 3, 2, "00", DateTimeOffset.UnixEpoch);

        var json = JsonSerializer.Serialize(sent, SystemTextJsonMessageSerializer.Options);
        var received = JsonSerializer.Deserialize<ImageEmbedded>(json, SystemTextJsonMessageSerializer.Options)!;

        using var document = JsonDocument.Parse(json);
        var bytes = document.RootElement.GetProperty("vector").GetBytesFromBase64();
        Assert.Equal(vector.Length * 4, bytes.Length);
        Assert.Equal(0.1f, BitConverter.ToSingle(bytes.AsSpan(0, 4)));
        Assert.Equal(vector.Select(BitConverter.SingleToInt32Bits), received.Vector.Select(BitConverter.SingleToInt32Bits));
    }

    [Theory]
    [InlineData("\"AAAA\"")]  // base64 of 3 bytes: not whole floats
    [InlineData("\"not base64!\"")]
    [InlineData("{}")]
    public void A_vector_that_is_neither_whole_floats_in_base64_nor_an_array_is_refused(string vector)
    {
        var json = $$"""
            {"path":"a.jpg","imageId":"0123456789abcdef0123456789abcdef","vector":{{vector}},"modelKey":"m@1",
             "sizeBytes":10,"width":3,"height":2,"contentHash":"00","modifiedAt":"2025-01-02T03:04:05+00:00"}
            """;

        Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<ImageEmbedded>(json, SystemTextJsonMessageSerializer.Options));
    }
}
