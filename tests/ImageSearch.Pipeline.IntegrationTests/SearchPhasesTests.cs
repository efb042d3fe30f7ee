namespace ImageSearch.Pipeline.IntegrationTests;

/// <summary>How the phases of a search are combined across backends and rounded for the answer.</summary>
public sealed class SearchPhasesTests
{
    [Fact]
    public void Backends_searching_at_once_take_each_phase_as_long_as_the_slowest()
    {
        var slowest = SearchPhases.Slowest([new SearchPhases(1, 0, 3, 9), null, new SearchPhases(2, 0.5, 1, 4)]);
        Assert.Equal(new SearchPhases(2, 0.5, 3, 9), slowest);
    }

    [Fact]
    public void Backends_of_a_version_without_phases_report_none_rather_than_zeros()
    {
        Assert.Null(SearchPhases.Slowest([null, null]));
        Assert.Null(SearchPhases.Slowest([]));
    }

    [Fact]
    public void Rounding_keeps_each_phase_to_the_digits_asked()
    {
        Assert.Equal(new SearchPhases(1.235, 0, 2.0, 0.001), new SearchPhases(1.23456, 0.0001, 1.99999, 0.00051).Rounded(3));
    }
}
