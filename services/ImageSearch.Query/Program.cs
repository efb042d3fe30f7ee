using ImageSearch.Api;
using ImageSearch.Hosting;
using ImageSearch.Pipeline;
using ImageSearch.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults();
builder.AddImageSearch(PipelineRoles.Indexer | PipelineRoles.Query);
builder.AddImageSearchApi();

var app = builder.Build();
app.MapDefaultEndpoints();
app.MapImageSearchApi();
app.Run();
