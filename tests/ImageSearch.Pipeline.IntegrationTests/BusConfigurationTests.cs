using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace ImageSearch.Pipeline.IntegrationTests;

public sealed class BusConfigurationTests
{
    [Theory]
    [InlineData(PipelineRoles.Watcher)]
    [InlineData(PipelineRoles.Ingest)]
    [InlineData(PipelineRoles.Indexer | PipelineRoles.Query)]
    [InlineData(PipelineRoles.Watcher | PipelineRoles.Ingest | PipelineRoles.Indexer | PipelineRoles.Query)]
    public void No_process_sends_usage_telemetry_to_MassTransits_servers(PipelineRoles roles)
    {
        var root = Directory.CreateTempSubdirectory("bus-config-").FullName;
        try
        {
            using var host = PipelineHost.Build(roles, Directory.CreateDirectory(Path.Combine(root, "library")).FullName, Path.Combine(root, "db"), qdrant: null);

            Assert.False(host.Services.GetRequiredService<IOptions<UsageTelemetryOptions>>().Value.Enabled);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }
}
