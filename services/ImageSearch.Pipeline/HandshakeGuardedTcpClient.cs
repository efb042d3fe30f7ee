using System.Net;
using System.Net.Sockets;
using RabbitMQ.Client;

namespace ImageSearch.Pipeline;

/// <summary>
/// The socket the RabbitMQ client connects with, closed when the broker has sent nothing within a
/// deadline after accepting the connection.
/// </summary>
/// <remarks>
/// Why: RabbitMQ.Client 7.1 sends the protocol header and then awaits the broker's
/// connection.start with no deadline. Its HandshakeContinuationTimeout only sets the socket's
/// receive timeout, which asynchronous reads ignore, and MassTransit 8.4 passes no cancellation
/// token to the connect. So a peer that accepts TCP and never speaks AMQP (a broker frozen or still
/// booting, a proxy whose back end is gone) holds the bus start forever: nothing is logged, the
/// connect is never retried, and the process looks alive. Closing the socket makes that attempt
/// fail like a refused connection: MassTransit logs "Connection Failed" and retries with its
/// backoff. Only silence is bounded: once the broker has sent a byte, the client's own RPC
/// timeouts and heartbeats take over.
/// </remarks>
internal sealed class HandshakeGuardedTcpClient : ITcpClient
{
    private readonly Socket socket;
    private readonly TimeSpan deadline;
    private readonly Action<EndPoint?, TimeSpan> onSilent;
    private readonly TimeProvider clock;
    private ITimer? timer;
    private WatchedStream? stream;
    private volatile bool heard;

    /// <param name="family">The address family RabbitMQ.Client asks for.</param>
    /// <param name="deadline">How long the broker may stay silent after the TCP connect.</param>
    /// <param name="onSilent">Told (remote end, deadline) just before a silent connection is closed.</param>
    /// <param name="clock">Time source of the deadline.</param>
    public HandshakeGuardedTcpClient(AddressFamily family, TimeSpan deadline, Action<EndPoint?, TimeSpan> onSilent, TimeProvider clock)
    {
        socket = new Socket(family, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        this.deadline = deadline;
        this.onSilent = onSilent;
        this.clock = clock;
    }

    public bool Connected => socket.Connected;

    public TimeSpan ReceiveTimeout
    {
        get => TimeSpan.FromMilliseconds(socket.ReceiveTimeout);
        set => socket.ReceiveTimeout = (int)value.TotalMilliseconds;
    }

    public Socket Client => socket;

    public async Task ConnectAsync(IPAddress address, int port, CancellationToken cancellationToken)
    {
        await socket.ConnectAsync(address, port, cancellationToken).ConfigureAwait(false);
        timer = clock.CreateTimer(_ => CloseIfSilent(), null, deadline, Timeout.InfiniteTimeSpan);
    }

    public NetworkStream GetStream() => stream ??= new WatchedStream(socket, this);

    public void Close() => Dispose();

    public void Dispose()
    {
        timer?.Dispose();
        stream?.Dispose();
        socket.Dispose();
    }

    private void Heard()
    {
        if (!heard)
        {
            heard = true;
            timer?.Dispose();
        }
    }

    private void CloseIfSilent()
    {
        if (heard)
        {
            return;
        }

        EndPoint? remote = null;
        try
        {
            remote = socket.RemoteEndPoint;
            onSilent(remote, deadline);

            // Shutdown first: the client's pending read then ends (end of stream or an aborted
            // receive), which fails the connect attempt instead of leaving it waiting.
            socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Already closed by the client: nothing is waiting on it.
        }
        finally
        {
            socket.Close();
        }
    }

    /// <summary>The socket's stream, noting the first byte the broker sends.</summary>
    private sealed class WatchedStream(Socket socket, HandshakeGuardedTcpClient owner) : NetworkStream(socket, ownsSocket: false)
    {
        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var n = await base.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
            if (n > 0)
            {
                owner.Heard();
            }

            return n;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(Span<byte> buffer)
        {
            var n = base.Read(buffer);
            if (n > 0)
            {
                owner.Heard();
            }

            return n;
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));
    }
}
