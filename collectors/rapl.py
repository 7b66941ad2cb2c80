"""CPU package and DRAM energy from the powercap RAPL interface (/sys/class/powercap).

Each zone's ``energy_uj`` is a counter that wraps at ``max_energy_range_uj``; wraps between
two reads are unwrapped here, so ``energy_total`` is monotonic from the first read. The
counters update about every millisecond, so sampling at 10 Hz never misses a wrap unless a
zone spends its whole range (tens of kJ on typical parts) inside one interval.
Reading may need root (kernels since 5.10 restrict energy_uj): an unreadable counter makes
the source unavailable, with the reason.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collectors.base import Sample, SourceUnavailable

POWERCAP_ROOT = Path("/sys/class/powercap")
ROOT_ENV = "HARNESS_POWERCAP_ROOT"  # e.g. where a container mounts the host's powercap tree
ZONE_DIR = re.compile(r"^(intel-rapl|amd-rapl)(:\d+)+$")


@dataclass
class _Zone:
    label: str
    fd: int  # kept open: pread at offset 0 re-reads a sysfs file for a fraction of open()
    max_range_uj: int
    last_raw: int = 0
    total_uj: int = 0
    last_t: float | None = None


def _read_int(path: Path) -> int:
    with open(path) as f:
        return int(f.read().strip())


def _pread_int(fd: int) -> int:
    return int(os.pread(fd, 64, 0))


def _label(zone_dir: Path, name: str) -> str:
    """package-0 stays as is; a socket's dram zone becomes dram-<socket>."""
    if re.search(r"-\d+$", name):
        return name
    socket = zone_dir.name.split(":")[1]
    return f"{name}-{socket}"


class RaplCollector:
    """Package and DRAM domains (core/uncore are inside the package figure, so left out)."""

    name = "rapl"

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root or os.environ.get(ROOT_ENV) or POWERCAP_ROOT)
        self._zones: list[_Zone] = []

    def open(self) -> None:
        if not self.root.is_dir():
            raise SourceUnavailable(f"no powercap interface at {self.root}")
        zones = []
        for d in sorted(self.root.iterdir()):
            if not ZONE_DIR.match(d.name) or not (d / "energy_uj").exists():
                continue
            try:
                name = (d / "name").read_text().strip()
            except OSError:
                continue
            if not (name.startswith("package") or name == "dram"):
                continue
            try:
                max_range = _read_int(d / "max_energy_range_uj")
                zone = _Zone(_label(d, name), os.open(d / "energy_uj", os.O_RDONLY), max_range)
                zones.append(zone)
                zone.last_raw = _pread_int(zone.fd)
            except PermissionError:
                self._close(zones)
                raise SourceUnavailable(
                    f"RAPL counter {d / 'energy_uj'} is not readable by uid {os.getuid()} "
                    "(needs root, or read permission on energy_uj)"
                ) from None
            except (OSError, ValueError) as exc:
                self._close(zones)
                raise SourceUnavailable(f"RAPL counter {d} unreadable: {exc}") from None
        if not zones:
            raise SourceUnavailable(f"no RAPL package or dram zone under {self.root}")
        self._zones = zones

    def sample(self, t: float) -> list[Sample]:
        out = []
        for z in self._zones:
            raw = _pread_int(z.fd)
            delta = raw - z.last_raw
            if delta < 0:  # wrapped past max_energy_range_uj
                delta += z.max_range_uj
            z.total_uj += delta
            z.last_raw = raw
            out.append(Sample(t, self.name, z.label, "energy_total", "J", z.total_uj / 1e6))
            if z.last_t is not None and t > z.last_t:
                out.append(
                    Sample(t, self.name, z.label, "power", "W", delta / 1e6 / (t - z.last_t))
                )
            z.last_t = t
        return out

    @staticmethod
    def _close(zones: list[_Zone]) -> None:
        for z in zones:
            os.close(z.fd)

    def close(self) -> None:
        self._close(self._zones)
        self._zones = []

    def facts(self) -> dict[str, Any]:
        return {"zones": [z.label for z in self._zones]}
