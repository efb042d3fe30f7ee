using ImageSearch.Core;

namespace ImageSearch.Imaging.Tests;

/// <summary>The real photos and their derived variants (see scripts/make-test-variants.py), and pixel comparisons.</summary>
internal static class TestData
{
    /// <summary>The repository root: the nearest folder above the test assembly that holds ImageSearch.sln.</summary>
    public static string RepoRoot { get; } = FindRepoRoot();

    public static string PhotosDirectory => Path.Combine(RepoRoot, "test-data", "photos");

    public static string VariantsDirectory => Path.Combine(RepoRoot, "test-data", "variants");

    /// <summary>Stems of the photos that have variants (the script picks every 12th of the sorted list).</summary>
    public static IReadOnlyList<string> VariantStems { get; } = FindVariantStems();

    /// <summary>One stem per test case, for [MemberData].</summary>
    public static TheoryData<string> Stems => [.. VariantStems];

    public static IReadOnlyList<string> PhotoPaths => Directory.GetFiles(PhotosDirectory, "*.jpg").Order(StringComparer.Ordinal).ToArray();

    public static byte[] Variant(string name) => File.ReadAllBytes(Path.Combine(VariantsDirectory, name));

    /// <summary>The original photo a variant was made from.</summary>
    public static byte[] Original(string stem) => File.ReadAllBytes(Path.Combine(PhotosDirectory, stem + ".jpg"));

    /// <summary>The box the script pasted the photo at in &lt;stem&gt;.in-scene.jpg.</summary>
    public static BoundingBox InSceneBox(string stem) =>
        BoundingBox.Parse(File.ReadAllText(Path.Combine(VariantsDirectory, stem + ".in-scene.box")).Trim());

    /// <summary>Mean absolute difference per channel value (0..255).</summary>
    public static double MeanAbsDiff(RgbImage a, RgbImage b)
    {
        Assert.Equal((a.Width, a.Height), (b.Width, b.Height));
        long sum = 0;
        for (var i = 0; i < a.Pixels.Length; i++)
        {
            sum += Math.Abs(a.Pixels[i] - b.Pixels[i]);
        }

        return (double)sum / a.Pixels.Length;
    }

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "ImageSearch.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"No ImageSearch.sln above {AppContext.BaseDirectory}.");
    }

    private static string[] FindVariantStems()
    {
        if (!Directory.Exists(VariantsDirectory))
        {
            throw new InvalidOperationException(
                $"{VariantsDirectory} is missing: run scripts/fetch-test-data.sh (the test command does) to fetch the photos and make the variants.");
        }

        return Directory.GetFiles(VariantsDirectory, "*.in-scene.box")
            .Select(p => Path.GetFileName(p)[..^".in-scene.box".Length])
            .Order(StringComparer.Ordinal)
            .ToArray();
    }
}
