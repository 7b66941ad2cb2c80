"""Energy of a measurement window from telemetry samples, the way Zeus and MLPerf do it.

Per (source, device): the cumulative energy counter differenced between the window's first
and last samples where the source has one (NVML on Volta and newer, RAPL, amdsmi);
otherwise the power samples integrated with the trapezoid rule over the same window. A
window shorter than ``MIN_PERIODS`` times the counter's update period (or the sampling
interval, for integration) is flagged and its energy withheld, never extrapolated.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

from collectors.base import Sample

# How often each source's energy counter advances (NVML: about every 100 ms, per Zeus).
COUNTER_UPDATE_S = {"nvml": 0.1, "amdsmi": 0.001, "rapl": 0.001}
MIN_PERIODS = 10
# Power series in order of preference: instantaneous first; NVML's default is a 1 s average.
POWER_METRICS = ("power_instant", "power", "power_avg")


@dataclass(frozen=True)
class EnergyReading:
    """Energy of one device over one window, with how it was obtained."""

    source: str
    device: str
    method: str  # "counter" or "integrated:<power metric>"
    duration_s: float
    energy_j: float | None  # None when flagged
    avg_power_w: float | None
    peak_power_w: float | None
    samples: int
    flag: str = ""


def trapezoid(points: list[tuple[float, float]]) -> float:
    """Integral of a sampled series (t, value) by the trapezoid rule."""
    return sum((t1 - t0) * (v0 + v1) / 2 for (t0, v0), (t1, v1) in pairwise(points))


def energy_readings(samples: Iterable[Sample], interval_s: float) -> list[EnergyReading]:
    """One reading per (source, device) that reported an energy counter or a power series."""
    series: dict[tuple[str, str], dict[str, list[tuple[float, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for s in samples:
        series[(s.source, s.device)][s.metric].append((s.t, s.value))
    out = []
    for (source, device), metrics in sorted(series.items()):
        for points in metrics.values():
            points.sort()
        power_metric = next((m for m in POWER_METRICS if len(metrics.get(m, [])) >= 1), None)
        power = metrics.get(power_metric, []) if power_metric else []
        peak = max(v for _, v in power) if power else None
        counter = metrics.get("energy_total", [])
        if len(counter) >= 2:
            (t0, e0), (t1, e1) = counter[0], counter[-1]
            period = COUNTER_UPDATE_S.get(source, interval_s)
            out.append(
                _reading(
                    source,
                    device,
                    "counter",
                    t1 - t0,
                    e1 - e0,
                    peak,
                    len(counter),
                    period,
                    "the counter's update period",
                )
            )
        elif len(power) >= 2:
            duration = power[-1][0] - power[0][0]
            out.append(
                _reading(
                    source,
                    device,
                    f"integrated:{power_metric}",
                    duration,
                    trapezoid(power),
                    peak,
                    len(power),
                    interval_s,
                    "the sampling interval",
                )
            )
    return out


def _reading(
    source: str,
    device: str,
    method: str,
    duration: float,
    energy: float,
    peak: float | None,
    n: int,
    period: float,
    what: str,
) -> EnergyReading:
    if duration < MIN_PERIODS * period:
        flag = (
            f"window {duration:.3g} s is shorter than {MIN_PERIODS}x {what} ({period:g} s); "
            "energy withheld, not extrapolated"
        )
        return EnergyReading(source, device, method, duration, None, None, peak, n, flag)
    return EnergyReading(source, device, method, duration, energy, energy / duration, peak, n)
