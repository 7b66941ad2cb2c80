"""Benchmarks: each a Workload with parameters, a measured iteration and a verification.

Imports torch; knows nothing of Ray or SQL.
"""

from workloads.base import (
    MetricSpec,
    Params,
    UnsupportedParams,
    VerificationError,
    Work,
    Workload,
    WorkloadError,
)
from workloads.registry import (
    UnavailableWorkload,
    UnknownWorkload,
    all_workloads,
    get_workload,
    plugin_problems,
)

__all__ = [
    "MetricSpec",
    "Params",
    "UnavailableWorkload",
    "UnknownWorkload",
    "UnsupportedParams",
    "VerificationError",
    "Work",
    "Workload",
    "WorkloadError",
    "all_workloads",
    "get_workload",
    "plugin_problems",
]
