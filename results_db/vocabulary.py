"""The words results are stored in, defined once: the summary statistics of a metric, the
statuses of a trial, and how a per-GPU trial names its GPU. The summarising code, the
store's columns, the query records and the CLI all use these names."""

from __future__ import annotations

from enum import Enum
from typing import TypedDict


class Summary(TypedDict, total=False):
    """Statistics of one metric's raw per-iteration samples (None where there are none)."""

    n: int
    median: float | None
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    p5: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    cv: float | None  # std / mean
    ci_low: float | None  # the median's distribution-free 95% confidence interval
    ci_high: float | None
    ci_level: float | None  # the coverage that interval achieves


STATISTICS: tuple[str, ...] = tuple(Summary.__annotations__)


class TrialStatus(str, Enum):
    """How a trial attempt ended."""

    OK = "ok"
    FAILED = "failed"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"  # not run: a ladder stopped below it (harness.campaign.ladder)

    def __str__(self) -> str:  # f-strings and str() give the stored word, as StrEnum does
        return self.value


STATUSES: tuple[str, ...] = tuple(s.value for s in TrialStatus)


# Record keys that only serve a table's display (which params to leave out): never written
# to JSON, CSV or data frames.
DISPLAY_ONLY = ("param_defaults",)


def gpu_suffix(gpu: int | None, peer: int | None = None) -> str:
    """`` GPU 3`` for a per-GPU trial, `` GPU 0→1`` for a pair, empty otherwise."""
    if gpu is None:
        return ""
    return f" GPU {gpu}" + (f"→{peer}" if peer is not None else "")


# The energy-efficiency metric of a trial, by the kind of work its workload declares:
# (metric, unit, higher_is_better). Named here so playbooks and tables need no energy code.
EFFICIENCY: dict[str, tuple[str, str, bool]] = {
    "bytes": ("energy_per_gb", "J/GB", False),
    "flops": ("gflop_per_joule", "GFLOP/J", True),
    "tokens": ("energy_per_token", "J/token", False),
}

# The telemetry sources a playbook may ask for (collectors.sampler holds one of each).
TELEMETRY_SOURCES: tuple[str, ...] = ("amdsmi", "host", "nvml", "rapl")
