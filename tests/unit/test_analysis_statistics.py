"""Statistics helpers agree with scipy and judge like Kayenta."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from resilience.analysis.statistics import compare, mad, mann_kendall, mann_whitney_u, theil_sen


@pytest.mark.parametrize("seed", range(8))
def test_mann_whitney_matches_scipy(seed: int) -> None:
    """U and the two-sided p-value equal scipy's asymptotic test, ties included."""
    rng = np.random.default_rng(seed)
    a = np.round(rng.normal(10, 3, size=40 + seed), 0)
    b = np.round(rng.normal(11, 3, size=35 + 2 * seed), 0)
    ours = mann_whitney_u(a, b)
    ref = stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic")
    assert ours.u == pytest.approx(ref.statistic)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-6)


def test_cliffs_delta_sign_and_bounds() -> None:
    """Cliff's delta is +1 when every b exceeds every a, -1 for the reverse."""
    assert mann_whitney_u([1, 2, 3], [4, 5, 6]).cliffs_delta == 1.0
    assert mann_whitney_u([4, 5, 6], [1, 2, 3]).cliffs_delta == -1.0


def test_compare_inconclusive_under_thirty_samples() -> None:
    """Fewer than 30 one-second samples on a side is inconclusive, whatever the data."""
    result = compare(list(range(29)), [x * 10 for x in range(40)])
    assert result.verdict == "inconclusive"
    assert "30" in result.reason


def test_compare_detects_large_shift_and_ignores_tiny_one() -> None:
    """A doubling is 'higher'; a significant 3 % shift is below the effect floor: 'same'."""
    rng = np.random.default_rng(1)
    base = rng.normal(100, 5, size=200)
    assert compare(base, base * 2).verdict == "higher"
    assert compare(base, base / 2).verdict == "lower"
    tiny = compare(base, base * 1.03 + rng.normal(0, 0.1, size=200))
    assert tiny.verdict == "same"


def test_mann_kendall_and_theil_sen_match_scipy() -> None:
    """Trend direction, Kendall's S sign and the Theil-Sen slope agree with scipy."""
    rng = np.random.default_rng(3)
    x = np.arange(120, dtype=float)
    y = 0.5 * x + rng.normal(0, 5, size=120)
    trend = mann_kendall(y, x)
    assert trend.direction == "increasing"
    ref_slope = stats.theilslopes(y, x).slope
    assert trend.slope == pytest.approx(ref_slope)
    tau = stats.kendalltau(x, y)
    assert trend.p_value == pytest.approx(tau.pvalue, rel=0.05)


def test_mann_kendall_flat_series_has_no_trend() -> None:
    """Noise around a constant gives no trend."""
    rng = np.random.default_rng(4)
    assert mann_kendall(rng.normal(5, 1, size=200)).direction == "none"


def test_mad_and_theil_sen_edge_cases() -> None:
    """Empty input gives NaN rather than raising; MAD is scaled to sigma."""
    assert math.isnan(mad([]))
    assert mad([1, 1, 1, 1]) == 0.0
    assert mad([1.0, 2.0, 3.0, 4.0, 100.0]) == pytest.approx(1.4826)
    assert all(math.isnan(v) for v in theil_sen([1.0], [2.0]))


def test_proportion_increase_tells_noise_from_a_real_rise() -> None:
    """32 % of 184 vs 35 % of 188 is noise; 0 of 60 vs 7 of 60 is a real rise."""
    from resilience.analysis.statistics import proportion_increase_p

    assert proportion_increase_p(59, 184, 66, 188) > 0.2
    assert proportion_increase_p(0, 60, 7, 60) < 0.01
    assert proportion_increase_p(7, 60, 0, 60) > 0.99
