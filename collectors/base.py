"""Plain data shared by every telemetry source, and the source interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Sample:
    """One telemetry reading. ``t`` is wall-clock seconds (time.time) on the node's clock."""

    t: float
    source: str
    device: str
    metric: str
    unit: str
    value: float


@dataclass(frozen=True)
class SourceStatus:
    """Whether a requested source delivered: an unavailable one is recorded, never skipped."""

    source: str
    available: bool
    reason: str = ""


class SourceUnavailable(Exception):
    """A source cannot run on this node (no library, no device, no permission)."""


class Collector(Protocol):
    """A telemetry source. ``open`` raises SourceUnavailable; ``sample`` reads once."""

    name: str

    def open(self) -> None: ...

    def sample(self, t: float) -> list[Sample]: ...

    def close(self) -> None: ...

    def facts(self) -> dict[str, Any]:
        """Static facts for the node fingerprint (driver version, power limits, ...)."""
        ...
