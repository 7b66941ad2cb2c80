"""The errors a workload raises on purpose (as opposed to bugs). A leaf: imports nothing of
ours, so `base` and `devices` both use it without importing each other."""

from __future__ import annotations


class WorkloadError(Exception):
    """Base of the errors a workload raises on purpose (as opposed to bugs)."""


class UnsupportedParams(WorkloadError):
    """The parameters cannot run on this node (dtype the device lacks, too large, ...)."""


class VerificationError(WorkloadError):
    """The workload's output does not match its reference: the trial is invalid."""


def first_line(exc: BaseException) -> str:
    """An exception's message in one line (its first), or its type's name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
