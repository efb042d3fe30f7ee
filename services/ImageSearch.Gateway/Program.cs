using ImageSearch.Api;
using ImageSearch.Gateway;
using ImageSearch.Hosting;
using ImageSearch.Pipeline;
using ImageSearch.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults();
builder.AddImageSearchApi();
builder.AddImageSearchUploads();
builder.AddImageSearchRateLimits();

// Embedded mode hosts the whole pipeline; with Gateway:QueryServices set it only fans out.
if (!ApiServices.IsRemote(builder.Configuration))
{
    builder.AddImageSearch(PipelineRoles.All);
}

var app = builder.Build();
app.MapDefaultEndpoints();
app.UseImageSearchRateLimits();
app.MapImageSearchApi();
app.MapWebPage();
app.MapUploadApi();
app.Run();

/// <summary>Entry point, visible to WebApplicationFactory in tests.</summary>
public partial class Program;
