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
}
