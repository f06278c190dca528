"""The statistics against known answers: explicit enumeration, the definitions written out, and
simulations with planted (or no) differences."""
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from spectral_peft.studies import stats


def _sign_flip_by_enumeration(d):
    d = np.asarray(d, float)
    observed = abs(d.mean())
    hits = sum(abs(np.mean(d * np.array(signs))) >= observed - 1e-12
               for signs in itertools.product([1, -1], repeat=len(d)))
    return hits / 2 ** len(d)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(-5, 5), min_size=1, max_size=9))
def test_sign_flip_matches_enumeration(d):
    d = [x / 4 for x in d]  # exact binary fractions: ties are ties
    assert stats.sign_flip_test(d) == pytest.approx(_sign_flip_by_enumeration(d))


def test_smallest_p_is_attained():
    for k in (3, 5, 6):
        assert stats.sign_flip_test(np.arange(1, k + 1)) == pytest.approx(stats.smallest_p(k))
    assert stats.smallest_p(5) > 0.05 > stats.smallest_p(6)


def test_holm_matches_definition():
    rng = np.random.default_rng(1)
    for _ in range(50):
        p = rng.uniform(0, 0.2, size=rng.integers(1, 8))
        m = len(p)
        order = np.argsort(p)
        expect = np.empty(m)
        running = 0.0
        for rank, i in enumerate(order):
            running = max(running, (m - rank) * p[i])
            expect[i] = min(1.0, running)
        np.testing.assert_allclose(stats.holm(p), expect)
    out = stats.holm([0.01, np.nan, 0.04])
    assert math.isnan(out[1]) and out[0] == pytest.approx(0.02) and out[2] == pytest.approx(0.04)


def test_planted_difference_is_detected_and_nulls_are_not():
    rng = np.random.default_rng(0)
    seeds = range(12)
    base = {s: 90 + rng.normal(0, 0.6) for s in seeds}
    planted = {s: base[s] + 1.5 + rng.normal(0, 0.6) for s in seeds}
    nulls = [{s: base[s] + rng.normal(0, 0.6) for s in seeds} for _ in range(4)]
    results = [stats.compare(x, base) for x in [planted, *nulls]]
    p_holm = stats.holm([r.p for r in results])
    assert p_holm[0] < 0.05 and (p_holm[1:] > 0.05).all()
    assert results[0].diff_ci_low < 1.5 < results[0].diff_ci_high and results[0].diff_ci_low > 0
    assert results[0].prob_improvement > 0.9


def test_family_wise_error_rate_with_holm():
    """No difference planted: over many grids of 6 comparisons, P(any Holm-adjusted p < 0.05) ≤ 5 %;
    without the correction it is far above (so the test can fail)."""
    rng = np.random.default_rng(2024)
    grids, m, k = 300, 6, 8
    any_holm = any_raw = 0
    for _ in range(grids):
        base = rng.normal(0, 1, k)
        # every configuration = the shared seed effect + its own independent noise; no true difference
        p = [stats.sign_flip_test((base + rng.normal(0, 1, k)) - (base + rng.normal(0, 1, k))) for _ in range(m)]
        any_holm += (stats.holm(p) < 0.05).any()
        any_raw += (np.asarray(p) < 0.05).any()
    assert any_holm / grids <= 0.05
    assert any_raw / grids > 0.15


def test_bootstrap_ci_coverage_is_near_nominal():
    rng = np.random.default_rng(7)
    reps, k, covered = 300, 20, 0
    for i in range(reps):
        x = rng.normal(5.0, 2.0, k)
        low, high = stats.bootstrap_ci(x, n_resamples=2000, seed=i)
        covered += low <= 5.0 <= high
    assert 0.88 <= covered / reps <= 0.98


def test_describe_edge_cases():
    one = stats.describe([0.9])
    assert one.n == 1 and math.isnan(one.ci_low) and math.isnan(one.std) and math.isnan(one.iqm)
    four = stats.describe([1, 2, 3, 4])
    assert math.isnan(four.iqm) and four.ci_low <= 2.5 <= four.ci_high
    eight = stats.describe([1, 2, 3, 4, 5, 6, 7, 100])
    assert eight.iqm == pytest.approx(np.mean([3, 4, 5, 6]))  # the middle half


def test_mde_matches_simulation():
    """Differences drawn with true mean = MDE are detected by the paired t-test in ~80 % of designs."""
    rng = np.random.default_rng(3)
    for k, sd in ((6, 1.0), (20, 0.8)):
        mde = stats.minimum_detectable_effect(sd, k)
        d = rng.normal(mde, sd, size=(20000, k))
        power = (sps.ttest_1samp(d, 0.0, axis=1).pvalue < 0.05).mean()
        assert power == pytest.approx(0.8, abs=0.015), (k, power)
    # the large-k normal approximation
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    assert stats.minimum_detectable_effect(1.0, 2000) == pytest.approx(z / math.sqrt(2000), rel=1e-3)
    k = stats.seeds_for_effect(0.9, 0.5)
    assert stats.minimum_detectable_effect(0.9, k) <= 0.5 < stats.minimum_detectable_effect(0.9, k - 1)


def test_tost_equivalence():
    rng = np.random.default_rng(5)
    tiny = rng.normal(0.0, 0.3, 30)
    assert stats.equivalence_test(tiny, 0.5) < 0.05
    assert stats.equivalence_test(tiny + 1.0, 0.5) > 0.5
    # the same decision as the 90 % t-interval lying inside ±margin
    for shift in np.linspace(-0.6, 0.6, 13):
        d = tiny + shift
        low, high = sps.t.interval(0.9, len(d) - 1, d.mean(), sps.sem(d))
        assert (stats.equivalence_test(d, 0.5) < 0.05) == (-0.5 < low and high < 0.5)


def test_probability_of_improvement_counts_ties_half():
    assert stats.probability_of_improvement([1, -1, 0, 2]) == pytest.approx(2.5 / 4)
