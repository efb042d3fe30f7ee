using System.Text.RegularExpressions;
using Xunit.Abstractions;

namespace ImageSearch.IntegrationTests;

/// <summary>
/// The short, assert-only version of <c>bench load</c>: concurrent searches (whole and boxed) and
/// uploads (photos and files that are not images) against a real gateway on loopback for a few
/// seconds; no 5xx, no request without an answer, every error a problem body, every accepted upload
/// indexed, the gateway healthy afterwards. The bench runs it for a minute and reports throughput and p99.
/// </summary>
public sealed partial class LoadTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Concurrent_searches_and_uploads_get_no_5xx_and_every_accepted_upload_is_indexed()
    {
        var (code, stdout, stderr) = await TestPaths.RunAsync(TestPaths.Cli, "bench", "load", "--seconds", "8", "--searchers", "3", "--uploaders", "1");
        output.WriteLine(stdout);
        Assert.True(code == 0, $"bench load failed ({code}):\n{stdout}\n{stderr}");

        var summary = Summary().Match(stdout);
        Assert.True(summary.Success, stdout);
        Assert.Equal("0", summary.Groups["fivexx"].Value);
        Assert.Equal("0", summary.Groups["unanswered"].Value);
        Assert.Equal("0", summary.Groups["lost"].Value);
        Assert.True(int.Parse(summary.Groups["requests"].Value, System.Globalization.CultureInfo.InvariantCulture) > 10, stdout);
        Assert.True(int.Parse(summary.Groups["accepted"].Value, System.Globalization.CultureInfo.InvariantCulture) > 0, stdout);
        Assert.DoesNotContain("FAILURE", stdout, StringComparison.Ordinal);
    }

    [GeneratedRegex(@"load: (?<requests>\d+) requests in .*?, (?<fivexx>\d+) 5xx, (?<unanswered>\d+) without an answer, \d+ rate-limited; (?<accepted>\d+) uploads accepted, \d+ indexed, (?<lost>\d+) not; healthy: True")]
    private static partial Regex Summary();
}
