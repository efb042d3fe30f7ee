using ImageSearch.Core;

namespace ImageSearch.Imaging.Tests;

/// <summary>Bounding boxes: crop to the clamped box, then resize.</summary>
public sealed class RegionTests
{
    private static readonly VipsImageDecoder Decoder = new();

    [Theory]
    [MemberData(nameof(TestData.Stems), MemberType = typeof(TestData))]
    public void Box_around_a_pasted_photo_gives_that_photo(string stem)
    {
        // The script pasted the photo, scaled to 40%, into another photo at this box.
        var scene = TestData.Variant(stem + ".in-scene.jpg");
        var box = TestData.InSceneBox(stem);
        var original = Decoder.Prepare(TestData.Original(stem), 128, 96).Pixels;

        var inBox = Decoder.Prepare(scene, 128, 96, box);
        Assert.Equal(box, inBox.Region);
        Assert.Equal(new ImageInfo(480, 360, "jpeg", 3), inBox.Original);
        var diff = TestData.MeanAbsDiff(original, inBox.Pixels);
        Assert.InRange(diff, 0, 6);

        // A box a quarter of its size off to the side sees something else: the match is not luck.
        var shifted = box with { X = box.X + (box.Width / 4), Y = box.Y + (box.Height / 4) };
        Assert.True(TestData.MeanAbsDiff(original, Decoder.Prepare(scene, 128, 96, shifted).Pixels) > 2 * diff);
    }

    [Theory]
    [MemberData(nameof(TestData.Stems), MemberType = typeof(TestData))]
    public void Many_regions_from_one_decode_match_one_prepare_per_region(string stem)
    {
        var scene = TestData.Variant(stem + ".in-scene.jpg");
        var box = TestData.InSceneBox(stem);
        var corner = new BoundingBox(0, 0, 200, 150);
        var outside = new BoundingBox(400, 300, 500, 500); // clamped to the image, as Prepare does
        var views = Decoder.PrepareRegions(scene, 128, 96, [new BoundingBox(0, 0, 480, 360), box, corner, outside]);
        Assert.Equal(4, views.Count);
        Assert.All(views, v => Assert.Equal((128, 96, 128 * 96 * 3), (v.Width, v.Height, v.Pixels.Length)));
        Assert.InRange(TestData.MeanAbsDiff(Decoder.Prepare(scene, 128, 96).Pixels, views[0]), 0, 3);
        Assert.InRange(TestData.MeanAbsDiff(Decoder.Prepare(scene, 128, 96, box).Pixels, views[1]), 0, 4);
        Assert.InRange(TestData.MeanAbsDiff(Decoder.Prepare(scene, 128, 96, corner).Pixels, views[2]), 0, 4);
        Assert.InRange(TestData.MeanAbsDiff(Decoder.Prepare(scene, 128, 96, outside).Pixels, views[3]), 0, 4);
        Assert.Empty(Decoder.PrepareRegions(scene, 128, 96, []));
    }

    [Fact]
    public void Regions_of_a_broken_file_are_refused_like_any_decode()
    {
        Assert.Throws<InvalidImageException>(() => Decoder.PrepareRegions(TestData.Variant("broken-truncated.jpg"), 64, 64, [new BoundingBox(0, 0, 10, 10)]));
    }

    [Theory]
    [MemberData(nameof(TestData.Stems), MemberType = typeof(TestData))]
    public void Box_equals_decoding_the_cropped_file(string stem)
    {
        // crop50.jpg is the centre 339x254 of the photo (Pillow: int(480*.707), int(360*.707)),
        // saved at quality 90. 224x168 is reached by the same lanczos3 reduce from either file; at
        // 160x120 the small file would be loaded at half size by DCT scaling, a different filter
        // whose difference dominates on the flower bed's fine detail.
        var cropped = Decoder.Prepare(TestData.Variant(stem + ".crop50.jpg"), 224, 168).Pixels;
        var boxed = Decoder.Prepare(TestData.Original(stem), 224, 168, new BoundingBox(70, 53, 339, 254)).Pixels;
        Assert.InRange(TestData.MeanAbsDiff(cropped, boxed), 0, 4.5);
    }

    [Fact]
    public void Box_reaching_past_the_edges_is_clamped()
    {
        var photo = TestData.Original(TestData.VariantStems[0]);
        var prepared = Decoder.Prepare(photo, 64, 48, new BoundingBox(400, 300, 500, 500));
        Assert.Equal(new BoundingBox(400, 300, 80, 60), prepared.Region);
        var exact = Decoder.Prepare(photo, 64, 48, new BoundingBox(400, 300, 80, 60));
        Assert.Equal(exact.Pixels.Pixels, prepared.Pixels.Pixels);
    }

    [Fact]
    public void Box_outside_the_image_is_refused()
    {
        var photo = TestData.Original(TestData.VariantStems[0]);
        var e = Assert.Throws<InvalidImageException>(() => Decoder.Prepare(photo, 64, 64, new BoundingBox(480, 0, 10, 10)));
        Assert.Equal(ImageErrorKind.InvalidBox, e.Kind);
        Assert.Contains("480x360", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Tiny_box_is_enlarged_to_the_requested_size()
    {
        var photo = TestData.Original(TestData.VariantStems[0]);
        var prepared = Decoder.Prepare(photo, 224, 224, new BoundingBox(100, 100, 3, 2));
        Assert.Equal((224, 224), (prepared.Pixels.Width, prepared.Pixels.Height));
    }
}
