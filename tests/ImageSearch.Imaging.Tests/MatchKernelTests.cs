using ImageSearch.Core;
using ImageSearch.LocalFeatures;

namespace ImageSearch.Imaging.Tests;

/// <summary>
/// The match kernels (the AVX2 per-pair distance, the native AVX-512 VNNI and AMX-INT8 searches) against the plain
/// scalar loop, on features of real photos and on constructed edge cases. They must agree exactly:
/// the same nearest distance, nearest index and second distance for every query feature, hence the
/// same matches in the same order. The distances are integers computed without rounding on every
/// path, so any difference is a bug.
/// </summary>
public sealed class MatchKernelTests
{
    private const double Ratio = 0.8; // LocalFeatureOptions.Ratio's default
    private const int L = LocalFeatureSet.DescriptorLength;

    /// <summary>The kernels under test. One this CPU lacks falls back to the best it has (<see cref="GeometricVerifier.BestMatchKernel"/>).</summary>
    public static TheoryData<int> Kernels => [GeometricVerifier.Avx2Match, GeometricVerifier.Avx512VnniMatch, GeometricVerifier.AmxMatch];

    internal static readonly Lazy<LocalFeatureSet[]> PhotoFeatures = new(ExtractPhotoFeatures);

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Every_kernel_finds_the_scalar_loops_nearest_two_and_matches_on_real_photos(int kernel)
    {
        var sets = PhotoFeatures.Value;
        var pairs = 0;
        var matched = 0;
        // Each photo against the next (unrelated photos: few matches, many near ties) and each variant's
        // features against its original (related: many matches), both ways.
        for (var i = 0; i < sets.Length; i++)
        {
            matched += AssertSame(sets[i], sets[(i + 1) % sets.Length], kernel, $"photo {i} vs {(i + 1) % sets.Length}");
            pairs++;
        }

        foreach (var (variant, original) in VariantPairs())
        {
            matched += AssertSame(variant, original, kernel, "variant vs original");
            matched += AssertSame(original, variant, kernel, "original vs variant");
            pairs += 2;
        }

        // The photos must yield features and matches for the comparison to mean anything.
        Assert.True(sets.Sum(s => s.Count) > 100 * sets.Length, $"only {sets.Sum(s => s.Count)} features on {sets.Length} photos");
        Assert.True(matched > 20 * pairs / 3, $"only {matched} matches in {pairs} pairs");
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Every_kernel_agrees_on_any_count_of_query_and_candidate_features(int kernel)
    {
        // Candidate counts around the native kernels' 16 lanes and AMX's pairs of 16, query counts
        // around VNNI's 8 per pass and AMX's blocks of 16 and 32, a subset of real descriptors each time.
        var source = PhotoFeatures.Value.First(s => s.Count >= 200);
        foreach (var candidates in new[] { 0, 1, 2, 3, 15, 16, 17, 31, 32, 33, 47, 200 })
        {
            foreach (var queries in new[] { 0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100 })
            {
                var query = Subset(source, 0, queries);
                var candidate = Subset(source, 100 - (candidates / 2), candidates);
                AssertSame(query, candidate, kernel, $"{queries} x {candidates}");
            }
        }
    }

    [Fact]
    public void Candidates_with_fewer_than_two_features_give_no_matches()
    {
        var query = Subset(PhotoFeatures.Value[0], 0, 50);
        foreach (var kernel in new[] { GeometricVerifier.ScalarMatch, GeometricVerifier.Avx2Match, GeometricVerifier.Avx512VnniMatch, GeometricVerifier.AmxMatch })
        {
            Assert.Empty(GeometricVerifier.Match(query, Subset(query, 0, 0), Ratio, kernel));
            Assert.Empty(GeometricVerifier.Match(query, Subset(query, 3, 1), Ratio, kernel));
            Assert.Empty(GeometricVerifier.Match(Subset(query, 0, 0), query, Ratio, kernel));
        }
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Bytes_above_127_and_extreme_distances_are_exact(int kernel)
    {
        // 0 and 255 everywhere give the largest distance (128 * 255^2); bytes above 127 are where
        // the native kernel's signed offset (q - 128) would go wrong if it were off by one.
        var random = new Random(11);
        var query = Synthetic(40, random, (r, i, k) => i switch { 0 => 255, 1 => 0, 2 => (byte)(128 + (k % 2)), _ => (byte)r.Next(128, 256) });
        var candidate = Synthetic(37, random, (r, j, k) => j switch { 0 => 0, 1 => 255, 2 => 127, 3 => 128, _ => (byte)r.Next(0, 256) });
        AssertSame(query, candidate, kernel, "high bytes");

        var (best, _, second) = Nearest(Synthetic(1, random, (_, _, _) => 255), Synthetic(2, random, (_, _, _) => 0), kernel);
        Assert.Equal((128 * 255 * 255, 128 * 255 * 255), (best[0], second[0]));
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Ties_keep_the_first_candidate_and_make_the_second_distance_equal(int kernel)
    {
        // Copies of one descriptor at indices 5, 21 and 36 (different lanes and blocks of the native
        // kernel), and of another at 16 and 17: the nearest is the lowest index and the second equals
        // it, so the ratio test refuses the match, as the scalar loop does.
        var random = new Random(5);
        var candidate = Synthetic(40, random, (r, _, _) => (byte)r.Next(0, 256));
        var query = Synthetic(3, random, (r, _, _) => (byte)r.Next(0, 256));
        foreach (var j in new[] { 5, 21, 36 })
        {
            Array.Copy(query.Descriptors, 0, candidate.Descriptors, j * L, L);
        }

        Array.Copy(candidate.Descriptors, 16 * L, candidate.Descriptors, 17 * L, L);
        Array.Copy(candidate.Descriptors, 16 * L, query.Descriptors, 1 * L, L);
        var (best, index, second) = Nearest(query, candidate, kernel);
        Assert.Equal((0, 5, 0), (best[0], index[0], second[0]));
        Assert.Equal((0, 16, 0), (best[1], index[1], second[1]));
        AssertSame(query, candidate, kernel, "ties");

        // Every candidate equal: every distance ties.
        var same = Synthetic(33, random, (_, _, k) => (byte)(255 - k));
        AssertSame(query, same, kernel, "all equal");
        Assert.All(Nearest(query, same, kernel).Index, i => Assert.Equal(0, i));
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Matching_many_sets_in_one_call_gives_each_sets_own_matches(int kernel)
    {
        // Real sets of different sizes, with sets the search skips (fewer than two features) among them.
        var sets = PhotoFeatures.Value;
        var query = sets[0];
        var candidates = sets.Skip(1).Take(8)
            .Append(Subset(sets[1], 0, 1)).Append(Subset(sets[1], 0, 0)).Append(Subset(sets[2], 5, 2)).Append(query)
            .ToArray();
        var many = GeometricVerifier.MatchMany(query, candidates, Ratio, kernel);
        Assert.Equal(candidates.Length, many.Length);
        for (var i = 0; i < candidates.Length; i++)
        {
            Assert.Equal(GeometricVerifier.Match(query, candidates[i], Ratio, GeometricVerifier.ScalarMatch), many[i]);
        }

        Assert.Equal(query.Count, many[^1].Count); // the query against itself: every feature its own match
        Assert.All(GeometricVerifier.MatchMany(Subset(query, 0, 0), candidates, Ratio, kernel), Assert.Empty);
        Assert.Empty(GeometricVerifier.MatchMany(query, [], Ratio, kernel));
    }

    [Fact]
    public void The_verifier_counts_inliers_of_many_candidates_as_of_each_alone()
    {
        var verifier = new GeometricVerifier(Microsoft.Extensions.Options.Options.Create(new LocalFeatureOptions()));
        var pairs = VariantPairs().ToArray();
        var query = pairs[0].Variant;
        var candidates = pairs.Select(p => p.Original).Concat(PhotoFeatures.Value).Append(Subset(query, 0, 1)).ToArray();
        var counts = verifier.CountInliers(query, candidates);
        Assert.Equal(candidates.Select(c => verifier.CountInliers(query, c)), counts);
        Assert.True(counts[0] >= 8, $"the variant's own original has {counts[0]} inliers");
        Assert.Empty(verifier.CountInliers(query, []));
    }

    [Fact]
    public void The_best_kernel_is_a_known_level_and_the_default()
    {
        Assert.InRange(GeometricVerifier.BestMatchKernel, GeometricVerifier.ScalarMatch, GeometricVerifier.AmxMatch);
        var sets = PhotoFeatures.Value;
        Assert.Equal(GeometricVerifier.Match(sets[0], sets[1], Ratio, GeometricVerifier.BestMatchKernel), GeometricVerifier.Match(sets[0], sets[1], Ratio));
    }

    [Fact]
    public void Many_threads_matching_at_once_get_the_scalar_loops_matches_and_null_references_still_throw()
    {
        // Re-ranking matches on every core at once: the native scratch is per thread. A kernel that
        // enlarges the thread's signal frames must never run on the runtime's threads: an AMX-INT8
        // kernel run on the calling thread was tried, and the process died (SIGSEGV) at the next null
        // reference on a thread that had used the tiles. The runtime handles a null reference as a
        // SIGSEGV on a 16 KB alternate signal stack, and a frame carrying the 8 KB tile state takes
        // ~12 KB of it (AT_MINSIGSTKSZ). The AMX kernel now runs on the shim's own threads: the
        // callers here, runtime threads, must still survive their null references.
        var sets = PhotoFeatures.Value;
        var expected = Enumerable.Range(0, 20).Select(i => GeometricVerifier.Match(sets[i], sets[i + 1], Ratio, GeometricVerifier.ScalarMatch)).ToArray();
        Parallel.For(0, 400, new ParallelOptions { MaxDegreeOfParallelism = 8 }, n =>
        {
            var i = n % expected.Length;
            Assert.Equal(expected[i], GeometricVerifier.Match(sets[i], sets[i + 1], Ratio, GeometricVerifier.BestMatchKernel));
            object? nothing = n < 0 ? new object() : null;
            Assert.Throws<NullReferenceException>(() => nothing!.GetHashCode());
        });
    }

    [Fact]
    public void Too_few_descriptor_bytes_are_refused_before_any_kernel_reads_them()
    {
        var full = PhotoFeatures.Value[0];
        var truncated = full with { Descriptors = full.Descriptors[..^1] };
        foreach (var kernel in new[] { GeometricVerifier.ScalarMatch, GeometricVerifier.Avx512VnniMatch, GeometricVerifier.AmxMatch })
        {
            Assert.Throws<ArgumentException>(() => GeometricVerifier.Match(full, truncated, Ratio, kernel));
            Assert.Throws<ArgumentException>(() => GeometricVerifier.Match(truncated, full, Ratio, kernel));
        }
    }

    /// <summary>Asserts the kernel's nearest two and matches equal the scalar loop's; returns how many matches there were.</summary>
    private static int AssertSame(LocalFeatureSet query, LocalFeatureSet candidate, int kernel, string name)
    {
        var expected = GeometricVerifier.Match(query, candidate, Ratio, GeometricVerifier.ScalarMatch);
        var actual = GeometricVerifier.Match(query, candidate, Ratio, kernel);
        Assert.True(expected.SequenceEqual(actual), $"{name} kernel {kernel}: {actual.Count} matches, the scalar loop {expected.Count}");
        if (candidate.Count >= 2)
        {
            var reference = Nearest(query, candidate, GeometricVerifier.ScalarMatch);
            var fast = Nearest(query, candidate, kernel);
            for (var i = 0; i < query.Count; i++)
            {
                Assert.True((reference.Best[i], reference.Index[i], reference.Second[i]) == (fast.Best[i], fast.Index[i], fast.Second[i]),
                    $"{name} kernel {kernel}: query feature {i} nearest ({fast.Best[i]}, #{fast.Index[i]}, {fast.Second[i]}), " +
                    $"the scalar loop ({reference.Best[i]}, #{reference.Index[i]}, {reference.Second[i]})");
            }
        }

        return expected.Count;
    }

    private static (int[] Best, int[] Index, int[] Second) Nearest(LocalFeatureSet query, LocalFeatureSet candidate, int kernel)
    {
        int[] best = new int[query.Count], index = new int[query.Count], second = new int[query.Count];
        GeometricVerifier.Nearest(query, candidate, kernel, best, index, second);
        return (best, index, second);
    }

    private static LocalFeatureSet[] ExtractPhotoFeatures()
    {
        var extractor = new SiftExtractor(new VipsImageDecoder(), Microsoft.Extensions.Options.Options.Create(new LocalFeatureOptions()));
        return TestData.PhotoPaths.Select(p => extractor.Extract(File.ReadAllBytes(p))).ToArray();
    }

    private static IEnumerable<(LocalFeatureSet Variant, LocalFeatureSet Original)> VariantPairs()
    {
        var extractor = new SiftExtractor(new VipsImageDecoder(), Microsoft.Extensions.Options.Options.Create(new LocalFeatureOptions()));
        foreach (var stem in TestData.VariantStems)
        {
            var original = extractor.Extract(TestData.Original(stem));
            foreach (var variant in new[] { ".in-scene.jpg", ".crop50.jpg", ".grey.jpg" })
            {
                yield return (extractor.Extract(TestData.Variant(stem + variant)), original);
            }
        }
    }

    /// <summary>Features start .. start + count - 1 of a set (descriptors and frames).</summary>
    private static LocalFeatureSet Subset(LocalFeatureSet set, int start, int count) =>
        new(set.Width, set.Height, set.Frames[(4 * start)..(4 * (start + count))], set.Descriptors[(L * start)..(L * (start + count))]);

    private static LocalFeatureSet Synthetic(int count, Random random, Func<Random, int, int, byte> value)
    {
        var descriptors = new byte[count * L];
        for (var i = 0; i < count; i++)
        {
            for (var k = 0; k < L; k++)
            {
                descriptors[(i * L) + k] = value(random, i, k);
            }
        }

        return new LocalFeatureSet(100, 100, new float[4 * count], descriptors);
    }
}

/// <summary>Counts the shim's AMX worker threads, which every thread matching in this process may start: runs alone.</summary>
[Collection(nameof(SerialCollection))]
public sealed class MatchWorkerTests
{
    [Fact]
    public void Amx_worker_threads_end_with_the_threads_that_called()
    {
        // Each thread that matches with AMX gets a worker thread of the shim's; it must end when its
        // caller does, or a server would collect one per thread its pool ever started.
        var sets = MatchKernelTests.PhotoFeatures.Value;
        var before = SiftNative.MatchWorkers();
        var during = new int[6];
        var threads = Enumerable.Range(0, during.Length).Select(t => new Thread(() =>
        {
            GeometricVerifier.Match(sets[t], sets[t + 1], 0.8, GeometricVerifier.AmxMatch);
            during[t] = SiftNative.MatchWorkers();
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());

        if (GeometricVerifier.BestMatchKernel == GeometricVerifier.AmxMatch)
        {
            Assert.All(during, n => Assert.True(n > before, $"{n} workers while a caller lived, {before} before"));
        }
        else
        {
            Assert.All(during, n => Assert.Equal(0, n)); // no AMX here: the VNNI or managed kernel ran, on the caller
        }

        // A worker ends moments after its caller (it is told by the caller's thread-exit hook); bounded wait.
        for (var waited = 0; SiftNative.MatchWorkers() > before && waited < 30_000; waited += 20)
        {
            Thread.Sleep(20);
        }

        Assert.True(SiftNative.MatchWorkers() <= before, $"{SiftNative.MatchWorkers()} workers left, {before} before the callers started");
    }
}
