using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;

namespace ImageSearch.IntegrationTests;

/// <summary>
/// The distributed topology started by <c>scripts/cluster.sh</c> (the same script as
/// <c>./imagesearch cluster up</c>) for one test: a real RabbitMQ broker, a query service, N ingest
/// workers, the watcher and the gateway, each a separate process on loopback, watching a folder of
/// its own. Disposing stops exactly what it started and deletes the folder.
/// </summary>
internal sealed class LocalCluster : IAsyncDisposable
{
    private LocalCluster(string root, string library, string state, HttpClient client)
    {
        Root = root;
        Library = library;
        State = state;
        Client = client;
    }

    /// <summary>The temporary folder holding the library, the index and the cluster's state.</summary>
    public string Root { get; }

    /// <summary>The watched folder.</summary>
    public string Library { get; }

    /// <summary>The cluster's state folder: pids, logs, the broker's data.</summary>
    public string State { get; }

    /// <summary>An HTTP client of the gateway.</summary>
    public HttpClient Client { get; }

    /// <summary>Copies <paramref name="photos"/> into a new watched folder, then starts the cluster on it.</summary>
    public static async Task<LocalCluster> StartAsync(string name, IEnumerable<string> photos, int workers)
    {
        var root = Directory.CreateTempSubdirectory(name + "-").FullName;
        var library = Directory.CreateDirectory(Path.Combine(root, "library")).FullName;
        var state = Path.Combine(root, "state");
        foreach (var f in photos)
        {
            File.Copy(f, Path.Combine(library, Path.GetFileName(f)));
        }

        var port = TestPaths.FreePort();
        var (code, stdout, stderr) = await ScriptAsync("cluster.sh", "up", "--watch", library, "--workers", workers.ToString(CultureInfo.InvariantCulture),
            "--port", port.ToString(CultureInfo.InvariantCulture), "--db", Path.Combine(root, "db"), "--state", state).ConfigureAwait(false);
        if (code != 0)
        {
            // xunit does not call DisposeAsync when InitializeAsync fails: stop what did start here.
            await ScriptAsync("cluster.sh", "down", "--state", state).ConfigureAwait(false);
            Directory.Delete(root, recursive: true);
            Assert.Fail($"cluster up failed:\n{stdout}\n{stderr}");
        }

        return new LocalCluster(root, library, state, new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/"), Timeout = TimeSpan.FromMinutes(1) });
    }

    /// <summary>Runs <c>scripts/rabbitmq.sh</c> <paramref name="action"/> (stop, start, restart) on the cluster's broker.</summary>
    public async Task BrokerAsync(string action)
    {
        var (code, _, stderr) = await ScriptAsync("rabbitmq.sh", action, "--dir", Path.Combine(State, "rabbitmq"), "--name", "imagesearch-cluster").ConfigureAwait(false);
        Assert.True(code == 0, $"rabbitmq.sh {action} failed: {stderr}");
    }

    /// <summary>SIGKILL to the cluster's process <paramref name="name"/> (e.g. ingest-1): no chance to finish or acknowledge what it holds.</summary>
    public void Kill(string name)
    {
        foreach (var line in File.ReadAllLines(Path.Combine(State, "pids")))
        {
            var parts = line.Split(' ');
            if (parts[1] == name)
            {
                using var p = Process.GetProcessById(int.Parse(parts[0], CultureInfo.InvariantCulture));
                p.Kill();
            }
        }
    }

    /// <summary>
    /// Polls the gateway's <c>/api/status</c> until <paramref name="condition"/> holds. The time limit
    /// only bounds a broken run (no outcome depends on speed); on it, the error carries the last status
    /// and the end of every process's log.
    /// </summary>
    public async Task<JsonElement> WaitForStatusAsync(Func<JsonElement, bool> condition, string what, int minutes = 4)
    {
        JsonElement last = default;
        await WaitUntilAsync(async () => condition(last = await Client.GetFromJsonAsync<JsonElement>("api/status").ConfigureAwait(false)), what, minutes,
            () => $"last status {last}").ConfigureAwait(false);
        return last;
    }

    /// <summary>Polls <paramref name="condition"/> until it holds; a gateway briefly unable to reach a backend counts as "not yet".</summary>
    public async Task WaitUntilAsync(Func<Task<bool>> condition, string what, int minutes = 4, Func<string>? describe = null)
    {
        var deadline = DateTime.UtcNow.AddMinutes(minutes);
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                if (await condition().ConfigureAwait(false))
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // The gateway answers 503 while the query service is briefly unreachable.
            }

            await Task.Delay(250).ConfigureAwait(false);
        }

        var logs = string.Join("\n", Directory.GetFiles(Path.Combine(State, "logs")).Select(f =>
            $"--- {Path.GetFileName(f)}\n{string.Join('\n', File.ReadLines(f).TakeLast(15).Select(l => l.Length > 400 ? l[..400] : l))}"));
        throw new TimeoutException($"Gave up waiting for {what}; {describe?.Invoke()}.\n{logs}");
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await ScriptAsync("cluster.sh", "down", "--state", State).ConfigureAwait(false);
        Directory.Delete(Root, recursive: true);
    }

    // The test command already set everything up: the script must not rebuild what other tests run.
    private static Task<(int Code, string Stdout, string Stderr)> ScriptAsync(string script, params string[] args) =>
        TestPaths.RunProcessAsync("bash", [Path.Combine(TestPaths.Repo, "scripts", script), .. args],
            new Dictionary<string, string> { ["IMAGESEARCH_SKIP_SETUP"] = "1" });
}

/// <summary>Tests that start a whole cluster (broker and five processes) run one at a time: two at once on a small machine only test the machine.</summary>
[CollectionDefinition(nameof(ClusterCollection))]
public sealed class ClusterCollection;
