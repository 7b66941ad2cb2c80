"""Summary statistics of raw per-iteration samples.

Percentiles interpolate linearly between order statistics (numpy's default). The confidence
interval is the distribution-free one for the median (order statistics bounded by the
binomial(n, 1/2) distribution): timing samples are skewed, so a t-interval on the mean would
overstate what we know. ``ci_level`` is the coverage actually achieved, which falls below 0.95
only when there are too few samples (n < 6), where the interval is [min, max].
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from results_db.vocabulary import STATISTICS, Summary


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, linear interpolation."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def median_ci(sorted_values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(low, high, achieved coverage) of the order-statistic interval for the median."""
    n = len(sorted_values)
    if n == 0:
        raise ValueError("confidence interval of no values")
    # Coverage of [x_(j), x_(n-1-j)] (0-based) is P(j < B <= n-1-j), B ~ Binomial(n, 1/2).
    pmf = [math.comb(n, i) / 2**n for i in range(n + 1)]
    best = (0, 1.0 - 2 * pmf[0] if n > 1 else 0.0)
    for j in range(n // 2):
        coverage = sum(pmf[j + 1 : n - j])
        if coverage >= level:
            best = (j, coverage)
        else:
            break
    j, coverage = best
    return sorted_values[j], sorted_values[n - 1 - j], coverage


def summarize(values: Sequence[float]) -> Summary:
    """n, median, mean, std, min, max, p5, p90, p95, p99, cv (std/mean) and the median's 95% CI."""
    n = len(values)
    if n == 0:
        return Summary(n=0, **dict.fromkeys(STATISTICS[1:]))  # type: ignore[typeddict-item]
    s = sorted(values)
    mean = statistics.fmean(s)
    std = statistics.stdev(s) if n > 1 else 0.0
    low, high, level = median_ci(s)
    return Summary(
        n=n,
        median=percentile(s, 50),
        mean=mean,
        std=std,
        min=s[0],
        max=s[-1],
        p5=percentile(s, 5),
        p90=percentile(s, 90),
        p95=percentile(s, 95),
        p99=percentile(s, 99),
        cv=std / mean if mean else None,
        ci_low=low,
        ci_high=high,
        ci_level=level,
    )
