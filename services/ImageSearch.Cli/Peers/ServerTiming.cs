using System.Globalization;

namespace ImageSearch.Cli.Peers;

/// <summary>Reads a W3C <c>Server-Timing</c> header: each metric's name and its <c>dur</c> in milliseconds.</summary>
internal static class ServerTiming
{
    /// <summary>Metrics without a readable duration are left out; commas and semicolons inside quoted descriptions are honoured.</summary>
    public static Dictionary<string, double> Parse(string header)
    {
        var metrics = new Dictionary<string, double>(StringComparer.OrdinalIgnoreCase);
        foreach (var metric in Split(header, ','))
        {
            var parts = Split(metric, ';');
            if (parts.Count == 0 || parts[0].Length == 0)
            {
                continue;
            }

            foreach (var parameter in parts.Skip(1))
            {
                var eq = parameter.IndexOf('=', StringComparison.Ordinal);
                if (eq > 0 && parameter[..eq].Trim().Equals("dur", StringComparison.OrdinalIgnoreCase) &&
                    double.TryParse(parameter[(eq + 1)..].Trim().Trim('"'), NumberStyles.Float, CultureInfo.InvariantCulture, out var ms))
                {
                    metrics[parts[0]] = ms;
                }
            }
        }

        return metrics;
    }

    private static List<string> Split(string text, char separator)
    {
        var parts = new List<string>();
        var quoted = false;
        var start = 0;
        for (var i = 0; i < text.Length; i++)
        {
            if (quoted && text[i] == '\\')
            {
                i++; // a quoted-pair: the next character is taken as it is
            }
            else if (text[i] == '"')
            {
                quoted = !quoted;
            }
            else if (text[i] == separator && !quoted)
            {
                parts.Add(text[start..i].Trim());
                start = i + 1;
            }
        }

        parts.Add(text[start..].Trim());
        return parts;
    }
}
