using ImageSearch.Gateway;
using ImageSearch.Hosting;
using ImageSearch.Pipeline;
using ImageSearch.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults();
builder.AddImageSearch(PipelineRoles.All);
builder.AddGatewayServices();

var app = builder.Build();
app.UseExceptionHandler();
app.UseStatusCodePages();
app.MapDefaultEndpoints();
app.MapSearchApi();
app.MapImagesApi();
app.MapStatusApi();
app.Run();

/// <summary>Entry point, visible to WebApplicationFactory in tests.</summary>
public partial class Program;
