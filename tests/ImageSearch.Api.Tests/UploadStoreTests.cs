using ImageSearch.Imaging;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace ImageSearch.Api.Tests;

public sealed class UploadStoreTests : IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("upload-store-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    [Theory]
    [InlineData("holiday.jpg", "holiday")]
    [InlineData("../../etc/passwd", "passwd")]
    [InlineData("C:\\Users\\me\\Pictures\\cat.png", "cat")]
    [InlineData(".bashrc", "bashrc")]
    [InlineData("...", "image")]
    [InlineData("", "image")]
    [InlineData(null, "image")]
    [InlineData("a/", "image")]
    [InlineData("my photo (2).final.JPG", "my-photo-2-final")]
    [InlineData("tab\there\nnewline\u0000nul.jpg", "tab-here-newline-nul")]
    [InlineData("Caf\u00e9 cr\u00e8me.webp", "Caf\u00e9-cr\u00e8me")]
    [InlineData("Cafe\u0301 cre\u0300me.webp", "Cafe\u0301-cre\u0300me")]
    [InlineData("日本の写真.heic", "日本の写真")]
    [InlineData("--__--.jpg", "image")]
    public void Stems_keep_letters_and_digits_and_never_leave_the_folder(string? name, string stem) =>
        Assert.Equal(stem, UploadStore.SafeStem(name));

    [Fact]
    public void Long_names_are_shortened()
    {
        var stem = UploadStore.SafeStem(new string('x', 500) + ".jpg");
        Assert.Equal(UploadStore.MaxStemLength, stem.Length);
    }

    [Theory]
    [InlineData("", null)]
    [InlineData("uploads", null)]
    [InlineData("incoming/phone", null)]
    [InlineData("../up", "'..'")]
    [InlineData("/abs", "relative")]
    [InlineData("a\\b", "relative")]
    [InlineData("a//b", "empty")]
    [InlineData(".uploads", "hidden")]
    [InlineData("ok/.cache", "hidden")]
    public void Upload_folders_must_stay_inside_the_library_and_visible_to_the_watcher(string folder, string? problem)
    {
        var found = UploadOptionsValidator.FolderProblem(folder);
        if (problem is null)
        {
            Assert.Null(found);
        }
        else
        {
            Assert.Contains(problem, found, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("a.jpg", true)]
    [InlineData("uploads/a b.jpg", true)]
    [InlineData("../a.jpg", false)]
    [InlineData("a/../../b.jpg", false)]
    [InlineData("/etc/passwd", false)]
    [InlineData("a\\b.jpg", false)]
    [InlineData("a//b.jpg", false)]
    [InlineData("./a.jpg", false)]
    [InlineData("", false)]
    public void File_state_paths_must_be_library_relative(string path, bool ok) =>
        Assert.Equal(ok, FilesApi.IsLibraryPath(path));

    [Fact]
    public async Task Concurrent_uploads_under_one_name_each_get_their_own_file()
    {
        var store = Store();
        var photo = Photo("nature-moon");
        var uploads = await Task.WhenAll(Enumerable.Range(0, 12).Select(_ => Task.Run(() => store.SaveAsync(store.Check("moon.jpg", photo), CancellationToken.None))));

        var paths = uploads.Select(u => u.Path).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(12, paths.Distinct(StringComparer.Ordinal).Count());
        Assert.Contains("uploads/moon.jpg", paths);
        Assert.Contains("uploads/moon-12.jpg", paths);
        foreach (var path in paths)
        {
            Assert.Equal(photo, await File.ReadAllBytesAsync(Path.Combine(root, path)));
        }

        // No temporary file is left behind.
        Assert.Equal(12, Directory.GetFiles(Path.Combine(root, "uploads"), "*", SearchOption.AllDirectories).Length);
    }

    [Fact]
    public void The_extension_follows_the_content_not_the_name()
    {
        var store = Store();
        var png = store.Check("photo.jpg", File.ReadAllBytes(Path.Combine(TestData.Variants, "indoors-chalkboard.png")));
        Assert.Equal("png", png.Info.Format);
        var webp = store.Check("photo.png", File.ReadAllBytes(Path.Combine(TestData.Variants, "indoors-chalkboard.webp")));
        Assert.Equal(".webp", UploadStore.Extensions[webp.Info.Format]);
    }

    [Theory]
    [InlineData("broken-text.jpg", StatusCodes.Status415UnsupportedMediaType)]
    [InlineData("broken-truncated.png", StatusCodes.Status400BadRequest)]
    [InlineData("broken-header-only.jpg", StatusCodes.Status400BadRequest)]
    [InlineData("bomb-20000x20000.png", StatusCodes.Status413PayloadTooLarge)]
    public void Bad_content_is_refused_with_the_status_that_says_why(string file, int status)
    {
        var e = Assert.Throws<UploadRejectedException>(() => Store().Check(file, File.ReadAllBytes(Path.Combine(TestData.Variants, file))));
        Assert.Equal(status, e.Status);
        Assert.StartsWith($"'{file}': ", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_file_over_the_size_limit_is_refused_before_it_is_read()
    {
        var e = Assert.Throws<UploadRejectedException>(() => Store().CheckSize("big.jpg", 33L * 1024 * 1024));
        Assert.Equal(StatusCodes.Status413PayloadTooLarge, e.Status);
        Assert.Contains("32 MB", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_folder_that_cannot_be_written_is_reported()
    {
        var file = Path.Combine(root, "not-a-folder");
        File.WriteAllText(file, "");
        var store = new UploadStore(new VipsImageDecoder(), Options.Create(new UploadOptions { LibraryRoot = file }), NullLogger<UploadStore>.Instance);
        Assert.Contains("not writable", store.Probe(), StringComparison.Ordinal);
        Assert.Null(Store().Probe());
    }

    private UploadStore Store() =>
        new(new VipsImageDecoder(), Options.Create(new UploadOptions { LibraryRoot = root, MaxPixels = 40_000_000 }), NullLogger<UploadStore>.Instance);

    private static byte[] Photo(string stem) => File.ReadAllBytes(Path.Combine(TestData.Photos, stem + ".jpg"));
}

internal static class TestData
{
    private static readonly string Repo = FindRepo();

    public static string Photos => Path.Combine(Repo, "test-data", "photos");

    public static string Variants => Path.Combine(Repo, "test-data", "variants");

    private static string FindRepo()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "ImageSearch.sln")))
            {
                return d.FullName;
            }
        }

        throw new InvalidOperationException("Repository root (ImageSearch.sln) not found above " + AppContext.BaseDirectory);
    }
}
