using System.Collections.Concurrent;
using System.Reflection;
using ImageSearch.Contracts;
using ImageSearch.Core;
using ImageSearch.Hosting;
using ImageSearch.Qdrant;
using ImageSearch.Qdrant.Tests;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace ImageSearch.Pipeline.IntegrationTests;

/// <summary>
/// One process as a deployable composes it (<see cref="ImageSearchHosting.AddImageSearch"/> with its
/// roles), over the in-memory bus, with the real model. With a <see cref="QdrantApiDouble"/> the
/// configuration says Store:Kind=Qdrant and the Qdrant store sends its requests to the double (the only
/// substitution: the handler under <see cref="QdrantVectorStore"/>).
/// </summary>
internal sealed class PipelineHost : IAsyncDisposable
{
    private PipelineHost(IHost host) => Host = host;

    public IHost Host { get; }

    public IServiceProvider Services => Host.Services;

    public IBus Bus => Services.GetRequiredService<IBus>();

    public EmbeddingModelInfo Model => Services.GetRequiredService<IEmbedder>().Model;

    public static IHost Build(PipelineRoles roles, string library, string db, QdrantApiDouble? qdrant, IDictionary<string, string?>? settings = null)
    {
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        var configuration = new Dictionary<string, string?>
        {
            ["Library:Root"] = library,
            ["Library:Watch"] = "false",
            ["Index:Directory"] = db,
            ["Embedding:ModelsDirectory"] = Path.Combine(TestData.RepoRoot, "models"),
            ["Ingest:BatchSize"] = "16",
            ["Ingest:BatchWait"] = "00:00:01",
            ["Ingest:ConcurrentBatches"] = "1",
        };
        if (qdrant is not null)
        {
            configuration[ImageSearchHosting.StoreKindKey] = nameof(StoreKind.Qdrant);
            configuration["Qdrant:Url"] = qdrant.BaseAddress.ToString();

            // Registered first, so AddQdrantVectorStore keeps it: the production store, sending to the double.
            builder.Services.AddSingleton(sp => new QdrantVectorStore(
                sp.GetRequiredService<IOptions<QdrantOptions>>().Value, sp.GetRequiredService<IEmbedder>().Model, qdrant));
        }

        foreach (var (key, value) in settings ?? new Dictionary<string, string?>())
        {
            configuration[key] = value;
        }

        builder.Configuration.AddInMemoryCollection(configuration);
        builder.AddImageSearch(roles);
        return builder.Build();
    }

    public static async Task<PipelineHost> StartAsync(PipelineRoles roles, string library, string db, QdrantApiDouble? qdrant, IDictionary<string, string?>? settings = null)
    {
        var host = Build(roles, library, db, qdrant, settings);
        await host.StartAsync().ConfigureAwait(false);
        return new PipelineHost(host);
    }

    /// <summary>Every <typeparamref name="T"/> published on this process's bus from now on, as another subscriber sees it.</summary>
    public async Task<ConcurrentQueue<(T Message, DateTime ReceivedAt)>> CaptureAsync<T>(string queue)
        where T : class
    {
        var received = new ConcurrentQueue<(T, DateTime)>();
        var handle = Bus.ConnectReceiveEndpoint(queue, e => e.Handler<T>(context =>
        {
            received.Enqueue((context.Message, DateTime.UtcNow));
            return Task.CompletedTask;
        }));
        await handle.Ready.ConfigureAwait(false);
        return received;
    }

    /// <summary>Announces files of the library as the watcher does.</summary>
    public Task AnnounceAsync(string library, IEnumerable<string> paths) =>
        Bus.PublishBatch(paths.Select(p =>
        {
            var file = new FileInfo(Path.Combine(library, p));
            return new ImageAdded(p, file.Length, file.LastWriteTimeUtc);
        }).ToList());

    public async ValueTask DisposeAsync()
    {
        await Host.StopAsync().ConfigureAwait(false);
        Host.Dispose();
    }
}

internal static class TestData
{
    /// <summary>The repository root, recorded at build time.</summary>
    public static string RepoRoot { get; } = typeof(TestData).Assembly
        .GetCustomAttributes<AssemblyMetadataAttribute>()
        .Single(a => a.Key == "RepoRoot").Value!;

    public static string Photos
    {
        get
        {
            var path = Path.Combine(RepoRoot, "test-data", "photos");
            return Directory.Exists(path) ? path : throw new DirectoryNotFoundException($"{path} is missing: run ./imagesearch setup --test.");
        }
    }

    /// <summary>
    /// A library of <paramref name="count"/> real photos plus "copy.jpg", a byte-identical copy of the
    /// first (one image, two paths). Returns the folder and the relative paths.
    /// </summary>
    public static (string Library, string[] Paths) MakeLibrary(string parent, int count)
    {
        var library = Directory.CreateDirectory(Path.Combine(parent, "library")).FullName;
        var photos = Directory.GetFiles(Photos, "*.jpg").Order(StringComparer.Ordinal).Take(count).ToArray();
        foreach (var photo in photos)
        {
            File.Copy(photo, Path.Combine(library, Path.GetFileName(photo)));
        }

        File.Copy(photos[0], Path.Combine(library, "copy.jpg"));
        return (library, [.. photos.Select(Path.GetFileName).Append("copy.jpg")!]);
    }

    public static ImageId IdOf(string library, string path) => ImageId.FromContent(File.ReadAllBytes(Path.Combine(library, path)));

    /// <summary>
    /// Polls until <paramref name="condition"/> holds. The deadline only bounds a broken run; no outcome
    /// depends on how fast anything is.
    /// </summary>
    public static async Task UntilAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddMinutes(2);
        while (!await condition().ConfigureAwait(false))
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"Gave up waiting for {what}.");
            }

            await Task.Delay(50).ConfigureAwait(false);
        }
    }

    public static Task UntilAsync(Func<bool> condition, string what) => UntilAsync(() => Task.FromResult(condition()), what);
}
