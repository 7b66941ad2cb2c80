"""Time to summarise a trial's raw samples (median, percentiles, the median's 95% CI).

Goal: 1,000,000 samples in under 1 s. The previous O(n^2) big-integer interval is timed
beside it on the sizes it can finish, so the figure is a ratio measured in the same run.

    PYTHONPATH=. .venv/bin/python benchmarks/summarize_speed.py
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import time
from collections.abc import Sequence

from harness.node.stats import summarize


def quadratic_median_ci(sorted_values: Sequence[float], level: float = 0.95) -> tuple:
    """The interval as it was computed before: exact binomial pmf with big integers."""
    n = len(sorted_values)
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


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-old", type=int, default=5_000, help="largest n for the old interval")
    args = ap.parse_args()
    rng = random.Random(1)
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}")
    print("| samples | summarize (s) | old interval alone (s) | old / new |")
    print("| ---: | ---: | ---: | ---: |")
    worst = 0.0
    for n in (1_000, 5_000, 10_000, 100_000, 1_000_000):
        values = [rng.lognormvariate(0, 0.3) for _ in range(n)]
        new = best_of(lambda v=values: summarize(v), 3)
        worst = max(worst, new if n == 1_000_000 else 0.0)
        if n <= args.max_old:
            s = sorted(values)
            old = best_of(lambda s=s: quadratic_median_ci(s), 1)
            print(f"| {n:,} | {new:.4f} | {old:.3f} | {old / new:,.0f}x |")
        else:
            print(f"| {n:,} | {new:.4f} | (not run) | |")
    verdict = "met" if worst < 1.0 else "MISSED"
    print(f"goal: 1,000,000 samples under 1 s: {verdict} ({worst:.3f} s)")
    if worst >= 1.0:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
