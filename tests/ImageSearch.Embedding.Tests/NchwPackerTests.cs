namespace ImageSearch.Embedding.Tests;

public class NchwPackerTests
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(5, 3)]      // 15 pixels: scalar path only
    [InlineData(4, 4)]      // exactly one vector group
    [InlineData(17, 3)]     // groups plus a tail
    [InlineData(299, 299)]  // Inception input
    [InlineData(224, 224)]  // MobileNet input
    public void Pack_WritesChannelPlanesInPixelOrder(int width, int height)
    {
        var image = TestSupport.RandomImage(width, height, new Random(width * 1000 + height));
        var pixels = width * height;
        var planes = new float[3 * pixels];

        NchwPacker.Pack(image.Pixels, planes);

        for (var p = 0; p < pixels; p++)
        {
            for (var c = 0; c < 3; c++)
            {
                Assert.Equal(image.Pixels[(3 * p) + c], planes[(c * pixels) + p]);
            }
        }
    }

    [Fact]
    public void Pack_CoversTheWholeByteRange()
    {
        var rgb = new byte[3 * 256];
        for (var i = 0; i < 256; i++)
        {
            rgb[3 * i] = (byte)i;
            rgb[(3 * i) + 1] = (byte)(255 - i);
            rgb[(3 * i) + 2] = (byte)(i ^ 0x5A);
        }

        var planes = new float[rgb.Length];
        NchwPacker.Pack(rgb, planes);

        for (var i = 0; i < 256; i++)
        {
            Assert.Equal(i, planes[i]);
            Assert.Equal(255 - i, planes[256 + i]);
            Assert.Equal(i ^ 0x5A, planes[512 + i]);
        }
    }

    [Fact]
    public void Pack_RejectsMismatchedDestination()
    {
        Assert.Throws<ArgumentException>(() => NchwPacker.Pack(new byte[12], new float[11]));
        Assert.Throws<ArgumentException>(() => NchwPacker.Pack(new byte[10], new float[10]));
    }
}
