using ImageSearch.Core;

namespace ImageSearch.Pipeline.IntegrationTests;

/// <summary>The sliding windows of region mode (pure function).</summary>
public sealed class QueryRegionsTests
{
    [Theory]
    [InlineData(640, 480)]
    [InlineData(480, 640)]
    [InlineData(1600, 900)]
    [InlineData(333, 333)]
    public void The_whole_image_comes_first_then_square_windows_covering_it_edge_to_edge(int width, int height)
    {
        var regions = QueryRegions.For(width, height);
        Assert.Equal(new BoundingBox(0, 0, width, height), regions[0]);
        foreach (var scale in QueryRegions.DefaultScales)
        {
            var side = (int)Math.Round(scale * Math.Min(width, height));
            var windows = regions.Skip(1).Where(r => r.Width == side).ToList();
            Assert.NotEmpty(windows);
            Assert.All(windows, r =>
            {
                Assert.Equal(r.Width, r.Height);
                Assert.InRange(r.X, 0, width - side);
                Assert.InRange(r.Y, 0, height - side);
            });

            // Edge to edge, and neighbours share at least the configured overlap.
            var xs = windows.Select(r => r.X).Distinct().Order().ToList();
            var ys = windows.Select(r => r.Y).Distinct().Order().ToList();
            Assert.Equal((0, width - side), (xs[0], xs[^1]));
            Assert.Equal((0, height - side), (ys[0], ys[^1]));
            Assert.Equal(xs.Count * ys.Count, windows.Count);
            var stride = side * (1 - QueryRegions.DefaultOverlap);
            Assert.All(xs.Zip(xs.Skip(1)), p => Assert.True(p.Second - p.First <= stride + 1, $"x step {p.Second - p.First} > {stride}"));
            Assert.All(ys.Zip(ys.Skip(1)), p => Assert.True(p.Second - p.First <= stride + 1, $"y step {p.Second - p.First} > {stride}"));
        }
    }

    [Fact]
    public void A_4_by_3_photo_gets_a_few_dozen_windows_at_most()
    {
        // Each window costs one model run: the count bounds a region query's latency.
        Assert.InRange(QueryRegions.For(1024, 768).Count, 10, 30);
    }

    [Fact]
    public void Tiny_images_are_searched_whole_only()
    {
        Assert.Equal([new BoundingBox(0, 0, 60, 40)], QueryRegions.For(60, 40));
    }

    [Fact]
    public void Bad_arguments_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => QueryRegions.For(0, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => QueryRegions.For(10, 10, overlap: 1.0));
    }
}
