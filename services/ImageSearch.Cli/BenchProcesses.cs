using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace ImageSearch.Cli;

/// <summary>What the benches share to run this build's servers as processes on loopback.</summary>
internal static class BenchProcesses
{
    /// <summary>The gateway of this build (the embedded server, <c>./imagesearch serve</c>), as setup builds it.</summary>
    public static string GatewayDll => Path.Combine(CliHost.RepoRoot, "services", "ImageSearch.Gateway", "bin", "Release", "net10.0", "ImageSearch.Gateway.dll");

    /// <summary>A loopback port free at the time of the call.</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Starts a long-running process whose output is read and dropped (so it never blocks on a full pipe).</summary>
    public static Process StartQuiet(ProcessStartInfo psi)
    {
        psi.RedirectStandardOutput = true;
        psi.RedirectStandardError = true;
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }
}
