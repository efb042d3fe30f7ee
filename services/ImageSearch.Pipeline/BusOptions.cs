using System.ComponentModel.DataAnnotations;

namespace ImageSearch.Pipeline;

/// <summary>Which message transport carries the pipeline's messages.</summary>
public enum BusTransport
{
    /// <summary>In-process (the embedded single-process mode).</summary>
    InMemory,

    /// <summary>A RabbitMQ broker (the distributed mode): durable queues, competing consumers.</summary>
    RabbitMq,
}

/// <summary>The bus. Section "Bus".</summary>
public sealed class BusOptions : IValidatableObject
{
    public const string Section = "Bus";

    public BusTransport Transport { get; set; } = BusTransport.InMemory;

    /// <summary>amqp://user:password@host:port/vhost, required for RabbitMq.</summary>
    public string? RabbitMqUrl { get; set; }

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (Transport == BusTransport.RabbitMq &&
            (!Uri.TryCreate(RabbitMqUrl, UriKind.Absolute, out var uri) || uri.Scheme is not ("amqp" or "amqps" or "rabbitmq" or "rabbitmqs")))
        {
            yield return new ValidationResult("Bus:RabbitMqUrl must be an amqp:// URL when Bus:Transport is RabbitMq.", [nameof(RabbitMqUrl)]);
        }
    }
}
