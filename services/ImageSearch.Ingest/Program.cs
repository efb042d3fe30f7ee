using ImageSearch.Hosting;
using ImageSearch.Pipeline;
using ImageSearch.ServiceDefaults;

// A web host only for its health endpoints; the work happens in the bus consumers.
var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults();
builder.AddImageSearch(PipelineRoles.Ingest);

var app = builder.Build();
app.MapDefaultEndpoints();
app.Run();
