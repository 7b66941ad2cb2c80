import math
import random

import numpy as np
import pytest

from harness.node.stats import median_ci, percentile, summarize


def test_summary_matches_numpy() -> None:
    rng = random.Random(3)
    values = [rng.lognormvariate(0, 0.5) for _ in range(101)]
    s = summarize(values)
    assert s["n"] == 101
    assert s["median"] == pytest.approx(np.median(values))
    assert s["mean"] == pytest.approx(np.mean(values))
    assert s["std"] == pytest.approx(np.std(values, ddof=1))
    assert s["p5"] == pytest.approx(np.percentile(values, 5))
    assert s["p95"] == pytest.approx(np.percentile(values, 95))
    assert s["min"] == min(values) and s["max"] == max(values)
    assert s["cv"] == pytest.approx(np.std(values, ddof=1) / np.mean(values))
    assert s["ci_low"] <= s["median"] <= s["ci_high"]


def test_median_ci_is_the_textbook_order_statistic_interval() -> None:
    # n=10: the 95% interval is (x(2), x(9)) in 1-based order statistics, coverage 0.9785.
    low, high, level = median_ci(list(range(10)))
    assert (low, high) == (1, 8)
    assert level == pytest.approx(1 - 2 * (1 + 10) / 2**10)


def test_median_ci_small_samples_report_their_real_coverage() -> None:
    low, high, level = median_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (low, high) == (1.0, 5.0)
    assert level == pytest.approx(1 - 2 / 2**5)  # 0.9375 < 0.95, and said so


def test_median_ci_coverage_holds_empirically() -> None:
    rng = random.Random(11)
    hits, trials = 0, 400
    for _ in range(trials):
        sample = sorted(rng.expovariate(1.0) for _ in range(25))
        low, high, _ = median_ci(sample)
        hits += low <= math.log(2) <= high  # true median of Exp(1)
    assert hits / trials >= 0.92


def test_percentile_edges_and_single_value() -> None:
    assert percentile([5.0], 95) == 5.0
    assert percentile([1.0, 2.0], 50) == 1.5
    s = summarize([2.0])
    assert s["std"] == 0.0 and s["median"] == 2.0


def test_empty_summary_has_no_numbers() -> None:
    s = summarize([])
    assert s["n"] == 0 and s["median"] is None


def _brute_median_ci(n: int, level: float = 0.95) -> tuple[int, float]:
    """The definition, summed term by term with exact integers: (j, coverage)."""
    best = (0, 1.0 - 2 / 2**n if n > 1 else 0.0)
    for j in range(n // 2):
        coverage = sum(math.comb(n, i) for i in range(j + 1, n - j)) / 2**n
        if coverage < level:
            break
        best = (j, coverage)
    return best


@pytest.mark.parametrize("n", [*range(1, 80), 99, 100, 101, 250, 777])
def test_median_ci_matches_the_definition_for_every_small_n(n: int) -> None:
    j, coverage = _brute_median_ci(n)
    low, high, level = median_ci(list(range(n)))
    assert (low, high) == (j, n - 1 - j)
    assert level == pytest.approx(coverage, abs=1e-12)


def test_large_sample_summary_is_exact_and_the_interval_is_the_normal_one() -> None:
    # 10,000 equal samples used to take 18 s on the driver (O(n^2) big integers).
    s = summarize([0.1] * 10_000)
    assert s["median"] == s["ci_low"] == s["ci_high"] == pytest.approx(0.1)
    n = 1_000_001
    low, high, level = median_ci(list(range(n)))
    half_width = 1.959964 * math.sqrt(n) / 2  # normal approximation of the order statistics
    assert abs((high - low) / 2 - half_width) <= 2
    assert 0.95 <= level < 0.9502


def test_the_exact_binomial_cdf_agrees_with_scipy_on_both_sides_of_its_bound() -> None:
    from scipy.special import bdtr

    from harness.node import stats

    for n in (2, 3, 10, 101, 2_000, stats.EXACT_MAX_N):
        for j in sorted({0, 1, n // 4, n // 2 - 1} - {-1}):
            scipy_coverage = 1.0 - 2.0 * float(bdtr(j, n, 0.5))
            assert stats._coverage(j, n) == pytest.approx(scipy_coverage, abs=1e-11)
    # Past the bound scipy answers, and it agrees with the sum done here in integers.
    n, j = stats.EXACT_MAX_N + 1, 4_900
    exact = 1 - 2 * sum(math.comb(n, i) for i in range(j + 1)) / 2**n
    assert stats._coverage(j, n) == pytest.approx(exact, abs=1e-11)
