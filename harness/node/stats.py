"""Summary statistics of raw per-iteration samples.

Percentiles interpolate linearly between order statistics (numpy's default). The confidence
interval is the distribution-free one for the median (order statistics bounded by the
binomial(n, 1/2) distribution): timing samples are skewed, so a t-interval on the mean would
overstate what we know. ``ci_level`` is the coverage actually achieved, which falls below 0.95
only when there are too few samples (n < 6), where the interval is [min, max].

Everything is O(n log n) (one sort) with vectorised numpy, and the interval needs
O(log n) evaluations of the binomial CDF: 1,000,000 samples summarise in well under a second
(``benchmarks/summarize_speed.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from results_db.vocabulary import STATISTICS, Summary


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, linear interpolation."""
    if len(sorted_values) == 0:
        raise ValueError("percentile of no values")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    low, high = float(sorted_values[lo]), float(sorted_values[hi])
    return low + (high - low) * (pos - lo)


# Up to this many samples the binomial CDF is summed exactly, in integers (13 ms at the
# bound, once per n); beyond, scipy's. Importing scipy costs 0.44 s, which every trial's Ray
# worker paid to summarise a few dozen repetitions.
EXACT_MAX_N = 10_000


@lru_cache(maxsize=64)
def _lower_tail_counts(n: int) -> tuple[int, ...]:
    """sum(C(n, i) for i <= j) for j = 0 .. n // 2: 2**n times the binomial(n, 1/2) CDF."""
    counts, term, total = [], 1, 0
    for i in range(n // 2 + 1):
        total += term
        counts.append(total)
        term = term * (n - i) // (i + 1)
    return tuple(counts)


def _coverage(j: int, n: int) -> float:
    """Coverage of [x_(j), x_(n-1-j)] (0-based): P(j < B <= n-1-j), B ~ Binomial(n, 1/2).

    By symmetry that is 1 - 2 P(B <= j).
    """
    if n <= EXACT_MAX_N:
        return (2**n - 2 * _lower_tail_counts(n)[j]) / 2**n  # int / int: rounded once
    # Imported here: commands that never summarise (--help, results listings) skip it.
    from scipy.special import bdtr

    return 1.0 - 2.0 * float(bdtr(j, n, 0.5))


def median_ci(sorted_values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(low, high, achieved coverage) of the order-statistic interval for the median.

    The narrowest interval [x_(j), x_(n-1-j)] whose coverage is at least ``level``: coverage
    falls as j grows, so j is found by bisection.
    """
    n = len(sorted_values)
    if n == 0:
        raise ValueError("confidence interval of no values")
    lo, hi = 0, n // 2 - 1  # candidates for j; the answer is the last one meeting the level
    if hi < 0 or _coverage(0, n) < level:
        j = 0
    else:
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if _coverage(mid, n) >= level:
                lo = mid
            else:
                hi = mid - 1
        j = lo
    coverage = _coverage(j, n) if n > 1 else 0.0
    return float(sorted_values[j]), float(sorted_values[n - 1 - j]), coverage


def ci_fraction(values: Sequence[float]) -> float:
    """Half the width of the median's 95% CI over the median: 0.02 is +-2%."""
    s = np.sort(np.asarray(values, dtype=np.float64))
    low, high, _ = median_ci(s)
    median = float(np.median(s))
    return (high - low) / 2 / abs(median) if median else float("inf")


def summarize(values: Sequence[float]) -> Summary:
    """n, median, mean, std, min, max, p5, p90, p95, p99, cv (std/mean) and the median's 95% CI."""
    n = len(values)
    if n == 0:
        return Summary(n=0, **dict.fromkeys(STATISTICS[1:]))  # type: ignore[typeddict-item]
    s = np.sort(np.asarray(values, dtype=np.float64))
    mean = float(s.mean())
    std = float(s.std(ddof=1)) if n > 1 else 0.0
    low, high, level = median_ci(s)
    p5, p50, p90, p95, p99 = (float(v) for v in np.percentile(s, [5, 50, 90, 95, 99]))
    return Summary(
        n=n,
        median=p50,
        mean=mean,
        std=std,
        min=float(s[0]),
        max=float(s[-1]),
        p5=p5,
        p90=p90,
        p95=p95,
        p99=p99,
        cv=std / mean if mean else None,
        ci_low=low,
        ci_high=high,
        ci_level=level,
    )
