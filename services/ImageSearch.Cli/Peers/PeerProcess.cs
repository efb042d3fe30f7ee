using System.Diagnostics;

namespace ImageSearch.Cli.Peers;

/// <summary>Starts a peer's script and collects what it printed.</summary>
internal static class PeerProcess
{
    /// <summary>Debian's interpreter: python3 on PATH may be a pyenv shim without Debian's modules.</summary>
    public const string Python = "/usr/bin/python3";

    public static async Task<(int Code, string Output, string Error)> RunAsync(string program, IEnumerable<string> args, CancellationToken ct,
        params (string Name, string Value)[] environment)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = CliHost.RepoRoot };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        foreach (var (name, value) in environment)
        {
            psi.Environment[name] = value;
        }

        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"Could not start {program}.");
        var stdout = p.StandardOutput.ReadToEndAsync(ct);
        var stderr = p.StandardError.ReadToEndAsync(ct);
        try
        {
            await p.WaitForExitAsync(ct).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw;
        }

        return (p.ExitCode, await stdout.ConfigureAwait(false), await stderr.ConfigureAwait(false));
    }
}
