using MassTransit;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace ImageSearch.Pipeline;

/// <summary>
/// Makes a bus that does not connect impossible to miss. The host does not wait for the RabbitMQ
/// bus to start (a start must not hang while the broker is away), so a start that never finishes
/// used to leave a process that logged "Application started" and then nothing. This checks the
/// bus every second; once it has been unconnected for <see cref="BusOptions.StartTimeout"/> (at
/// start, or after losing the broker) it logs an error naming the broker, and its health check
/// ("bus") turns Unhealthy with the broker, for how long and MassTransit's own account. The bus
/// keeps retrying meanwhile; when it connects the check turns Healthy and the recovery is logged.
/// "Connected" is MassTransit's Healthy: the connection up and every receive endpoint ready, so an
/// endpoint that stays faulted with the broker up is reported too (MassTransit's account says which).
/// </summary>
public sealed partial class BusConnectionMonitor(IBusControl bus, IOptions<BusOptions> options, TimeProvider clock, ILogger<BusConnectionMonitor> logger)
    : BackgroundService, IHealthCheck
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);

    private readonly Lock gate = new();
    private long unconnectedSince = clock.GetTimestamp();
    private bool connected;
    private bool reported;
    private string? lastAccount;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval, clock);
        try
        {
            do
            {
                Observe();
            }
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Shutting down.
        }
    }

    /// <summary>Reads the bus's health once and logs a missed deadline or a recovery.</summary>
    internal void Observe()
    {
        var health = bus.CheckHealth();
        var broker = options.Value.BrokerName;
        lock (gate)
        {
            var now = clock.GetTimestamp();
            if (health.Status == BusHealthStatus.Healthy)
            {
                if (!connected && reported)
                {
                    LogConnectedAfterDeadline(logger, broker, clock.GetElapsedTime(unconnectedSince, now));
                }

                connected = true;
                reported = false;
                return;
            }

            if (connected)
            {
                connected = false;
                unconnectedSince = now;
            }

            lastAccount = health.Description;
            var elapsed = clock.GetElapsedTime(unconnectedSince, now);
            if (!reported && elapsed >= options.Value.StartTimeout)
            {
                reported = true;
                LogNotConnected(logger, health.Exception, broker, elapsed, health.Description);
            }
        }
    }

    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var broker = options.Value.BrokerName;
        lock (gate)
        {
            if (connected)
            {
                return Task.FromResult(HealthCheckResult.Healthy($"Connected to RabbitMQ at {broker}."));
            }

            var elapsed = clock.GetElapsedTime(unconnectedSince);
            var seconds = (int)elapsed.TotalSeconds;
            var account = lastAccount is { Length: > 0 } a ? $" (MassTransit: {a})" : "";
            return Task.FromResult(elapsed >= options.Value.StartTimeout
                ? HealthCheckResult.Unhealthy($"Not connected to RabbitMQ at {broker} for {seconds} s{account}; still retrying.")
                : HealthCheckResult.Degraded($"Connecting to RabbitMQ at {broker} ({seconds} s){account}."));
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "The bus has not been connected to RabbitMQ at {Broker} for {Elapsed}: nothing is sent or received until it is. Still retrying. MassTransit says: {Account}")]
    private static partial void LogNotConnected(ILogger logger, Exception? ex, string broker, TimeSpan elapsed, string? account);

    [LoggerMessage(Level = LogLevel.Information, Message = "The bus connected to RabbitMQ at {Broker} after {Elapsed} without a connection")]
    private static partial void LogConnectedAfterDeadline(ILogger logger, string broker, TimeSpan elapsed);
}
