using Microsoft.Extensions.FileProviders;

namespace ImageSearch.Gateway;

/// <summary>
/// The web page at <c>/</c>: plain static files (web/, copied next to the program at build), no
/// build step and no request leaving the machine (the content security policy allows this origin
/// only). Files are revalidated on every load (ETag, 304 when unchanged), so a rebuilt page is never stale.
/// </summary>
public static class WebPage
{
    private const string ContentSecurityPolicy =
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; connect-src 'self'; " +
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

    public static WebApplication MapWebPage(this WebApplication app)
    {
        var root = Path.Combine(AppContext.BaseDirectory, "web");
        if (!File.Exists(Path.Combine(root, "index.html")))
        {
            throw new InvalidOperationException($"The web page is missing from {root}: rebuild the gateway (./imagesearch setup).");
        }

        var files = new PhysicalFileProvider(root);
        app.UseDefaultFiles(new DefaultFilesOptions { FileProvider = files });
        app.UseStaticFiles(new StaticFileOptions
        {
            FileProvider = files,
            OnPrepareResponse = context =>
            {
                var headers = context.Context.Response.Headers;
                headers.CacheControl = "no-cache";
                headers.ContentSecurityPolicy = ContentSecurityPolicy;
                headers.XContentTypeOptions = "nosniff";
                headers["Referrer-Policy"] = "no-referrer";
            },
        });
        return app;
    }
}
