namespace ImageSearch.Imaging.Tests;

/// <summary>The managed resize and orientation of <see cref="Resampler"/> (pure functions).</summary>
public sealed class ResamplerTests
{
    public static TheoryData<ResampleKernel> Kernels => [ResampleKernel.Triangle, ResampleKernel.Bicubic, ResampleKernel.Lanczos3];

    [Theory]
    [MemberData(nameof(Kernels))]
    public void A_flat_image_stays_exactly_flat_at_any_size(ResampleKernel kernel)
    {
        var source = Fill(37, 23, (x, y) => (200, 17, 90));
        foreach (var (w, h) in new[] { (224, 224), (5, 3), (37, 23), (100, 7), (1, 1) })
        {
            var output = Resampler.Resize(source, 37, 23, w, h, kernel);
            Assert.Equal(w * h * 3, output.Length);
            for (var i = 0; i < output.Length; i += 3)
            {
                Assert.Equal((200, 17, 90), (output[i], output[i + 1], output[i + 2]));
            }
        }
    }

    [Fact]
    public void The_same_size_is_an_exact_copy()
    {
        var source = Fill(13, 9, (x, y) => (x * 19, y * 27, (x * y) % 256));
        Assert.Equal(source, Resampler.Resize(source, 13, 9, 13, 9));
    }

    [Fact]
    public void Halving_with_the_triangle_filter_averages_neighbours_without_aliasing()
    {
        // A one-pixel checkerboard has no representable detail at half size: antialiasing must
        // turn it into its mean, where point sampling would keep all-black or all-white.
        var source = Fill(64, 64, (x, y) => ((x + y) % 2 == 0 ? 255 : 0, 0, 0));
        var output = Resampler.Resize(source, 64, 64, 32, 32);
        for (var i = 0; i < output.Length; i += 3)
        {
            Assert.InRange(output[i], 120, 135);
        }
    }

    [Fact]
    public void A_horizontal_ramp_stays_a_monotonic_ramp()
    {
        var source = Fill(300, 40, (x, y) => (x * 255 / 299, x * 255 / 299, x * 255 / 299));
        var output = Resampler.Resize(source, 300, 40, 224, 30);
        for (var y = 0; y < 30; y++)
        {
            for (var x = 1; x < 224; x++)
            {
                Assert.True(output[((y * 224) + x) * 3] >= output[((y * 224) + x - 1) * 3], $"ramp decreases at ({x}, {y})");
            }
        }

        Assert.InRange(output[0], 0, 2);
        Assert.InRange(output[223 * 3], 253, 255);
    }

    [Fact]
    public void Values_are_clamped_where_a_sharpening_kernel_overshoots()
    {
        // Lanczos rings at a hard edge; the result must saturate, not wrap around.
        var source = Fill(40, 4, (x, y) => x < 20 ? (0, 0, 0) : (255, 255, 255));
        var output = Resampler.Resize(source, 40, 4, 97, 4, ResampleKernel.Lanczos3);
        Assert.Equal(0, output[0]);
        Assert.Equal(255, output[96 * 3]);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(6)]
    [InlineData(7)]
    [InlineData(8)]
    public void Orientation_matches_the_box_mapping_of_every_exif_orientation(int orientation)
    {
        // Stored pixel (x, y) carries its own coordinates; each displayed pixel must come from the
        // stored pixel that ExifOrientation.ToStored names for a 1x1 box at that place.
        const int sw = 5, sh = 3;
        var stored = Fill(sw, sh, (x, y) => (x, y, 7));
        var (pixels, w, h) = Resampler.Orient(stored, sw, sh, orientation);
        var swap = orientation >= 5;
        Assert.Equal(swap ? (sh, sw) : (sw, sh), (w, h));
        for (var y = 0; y < h; y++)
        {
            for (var x = 0; x < w; x++)
            {
                var from = Vips.ExifOrientation.ToStored(new Core.BoundingBox(x, y, 1, 1), orientation, sw, sh);
                var at = ((y * w) + x) * 3;
                Assert.Equal((from.X, from.Y), (pixels[at], pixels[at + 1]));
            }
        }
    }

    [Fact]
    public void Wrong_buffer_sizes_are_refused()
    {
        Assert.Throws<ArgumentException>(() => Resampler.Resize(new byte[10], 2, 2, 1, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Resampler.Resize(new byte[12], 2, 2, 0, 1));
    }

    private static byte[] Fill(int width, int height, Func<int, int, (int R, int G, int B)> colour)
    {
        var pixels = new byte[width * height * 3];
        for (var y = 0; y < height; y++)
        {
            for (var x = 0; x < width; x++)
            {
                var (r, g, b) = colour(x, y);
                var at = ((y * width) + x) * 3;
                (pixels[at], pixels[at + 1], pixels[at + 2]) = ((byte)r, (byte)g, (byte)b);
            }
        }

        return pixels;
    }
}
