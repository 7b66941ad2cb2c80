"""Host CPU and memory through psutil."""

from __future__ import annotations

from typing import Any

import psutil

from collectors.base import Sample

RATES = (
    ("net_sent_rate", "bytes_sent"),
    ("net_recv_rate", "bytes_recv"),
    ("disk_read_rate", "read_bytes"),
    ("disk_write_rate", "write_bytes"),
)


def _io_counters() -> dict[str, float]:
    net = psutil.net_io_counters(nowrap=False)  # 64-bit counters: no wrap bookkeeping
    disk = psutil.disk_io_counters(nowrap=False)  # None where the kernel exposes no disks
    out = {"bytes_sent": net.bytes_sent, "bytes_recv": net.bytes_recv}
    if disk is not None:
        out |= {"read_bytes": disk.read_bytes, "write_bytes": disk.write_bytes}
    return out


class HostCollector:
    """CPU utilisation (total and per core) and memory every sample; network and disk I/O
    rates over spans of at least ``io_interval_s`` (each counter read opens files, and a
    rate needs no finer grain), which keeps 10 Hz sampling under 1% of a core."""

    name = "host"

    def __init__(self, io_interval_s: float = 1.0) -> None:
        self.io_interval_s = io_interval_s
        self._last: tuple[float, dict[str, float]] | None = None

    def open(self) -> None:
        # cpu_percent reports the time since its previous call: prime it so the first
        # sample covers the interval from now on, not since boot.
        psutil.cpu_percent(percpu=True)
        self._last = None

    def sample(self, t: float) -> list[Sample]:
        per_core = psutil.cpu_percent(percpu=True)
        out = [Sample(t, self.name, "cpu", "cpu_util", "%", sum(per_core) / max(len(per_core), 1))]
        out += [Sample(t, self.name, f"cpu{i}", "cpu_util", "%", v) for i, v in enumerate(per_core)]
        mem = psutil.virtual_memory()
        out.append(Sample(t, self.name, "memory", "memory_used", "B", float(mem.used)))
        out.append(Sample(t, self.name, "memory", "memory_util", "%", float(mem.percent)))
        if self._last is not None and t - self._last[0] < self.io_interval_s:
            return out
        counters = _io_counters()
        if self._last is not None:
            dt = t - self._last[0]
            for metric, key in RATES:
                if key in counters and key in self._last[1]:
                    rate = (counters[key] - self._last[1][key]) / dt
                    out.append(Sample(t, self.name, "io", metric, "B/s", rate))
        self._last = (t, counters)
        return out

    def close(self) -> None:
        return None

    def facts(self) -> dict[str, Any]:
        return {}
