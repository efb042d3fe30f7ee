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

    /// <summary>
    /// How long a broker that accepted the TCP connection may stay silent before the connection
    /// attempt is abandoned and retried. RabbitMQ.Client 7.1 would otherwise wait for the broker's
    /// first AMQP frame forever (see <see cref="HandshakeGuardedTcpClient"/>).
    /// </summary>
    public TimeSpan HandshakeTimeout { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// How long the bus may stay unconnected (at start, or after losing the broker) before the
    /// process reports itself unhealthy in /healthz and logs an error naming the broker. It keeps
    /// retrying either way.
    /// </summary>
    public TimeSpan StartTimeout { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>The broker without its credentials, for logs and health reports: host:port, and the virtual host when not "/".</summary>
    public string BrokerName
    {
        get
        {
            if (!Uri.TryCreate(RabbitMqUrl, UriKind.Absolute, out var uri))
            {
                return "(no broker configured)";
            }

            var port = uri.IsDefaultPort || uri.Port <= 0 ? (uri.Scheme is "amqps" or "rabbitmqs" ? 5671 : 5672) : uri.Port;
            var vhost = Uri.UnescapeDataString(uri.AbsolutePath.TrimStart('/'));
            return vhost.Length == 0 ? $"{uri.Host}:{port}" : $"{uri.Host}:{port}, virtual host '{vhost}'";
        }
    }

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (HandshakeTimeout <= TimeSpan.Zero || StartTimeout <= TimeSpan.Zero)
        {
            yield return new ValidationResult("Bus:HandshakeTimeout and Bus:StartTimeout must be positive.", [nameof(HandshakeTimeout), nameof(StartTimeout)]);
        }

        if (Transport == BusTransport.RabbitMq &&
            (!Uri.TryCreate(RabbitMqUrl, UriKind.Absolute, out var uri) || uri.Scheme is not ("amqp" or "amqps" or "rabbitmq" or "rabbitmqs")))
        {
            yield return new ValidationResult("Bus:RabbitMqUrl must be an amqp:// URL when Bus:Transport is RabbitMq.", [nameof(RabbitMqUrl)]);
        }
    }
}
