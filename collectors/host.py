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


def _busy_total(times: Any) -> tuple[float, float]:
    """(busy, total) seconds of one CPU, counted as psutil.cpu_percent counts them: idle and
    iowait are idle; guest time is already inside user and nice."""
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, total


class HostCollector:
    """CPU utilisation (total and per core) and memory every sample; network and disk I/O
    rates over spans of at least ``io_interval_s`` (each counter read opens files, and a
    rate needs no finer grain), which keeps 10 Hz sampling under 1% of a core."""

    name = "host"

    def __init__(self, io_interval_s: float = 1.0) -> None:
        self.io_interval_s = io_interval_s
        self._last: tuple[float, dict[str, float]] | None = None
        self._cpu_last: list[tuple[float, float]] | None = None

    def open(self) -> None:
        self._last = self._cpu_last = None

    def _cpu_util(self) -> list[float] | None:
        """Per-core busy % since the previous sample, from our own cpu_times counters (not
        psutil.cpu_percent's process-wide state, which any other caller resets). None on the
        first sample: its span would be the time before the window, and reading 0% there
        marked every trial's first point idle."""
        now = [_busy_total(t) for t in psutil.cpu_times(percpu=True)]
        last, self._cpu_last = self._cpu_last, now
        if last is None or len(last) != len(now):
            return None
        return [
            min(100.0, max(0.0, 100.0 * (b1 - b0) / (t1 - t0))) if t1 > t0 else 0.0
            for (b0, t0), (b1, t1) in zip(last, now, strict=True)
        ]

    def sample(self, t: float) -> list[Sample]:
        out: list[Sample] = []
        per_core = self._cpu_util()
        if per_core is not None:
            total = sum(per_core) / max(len(per_core), 1)
            out.append(Sample(t, self.name, "cpu", "cpu_util", "%", total))
            out += [
                Sample(t, self.name, f"cpu{i}", "cpu_util", "%", v) for i, v in enumerate(per_core)
            ]
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
