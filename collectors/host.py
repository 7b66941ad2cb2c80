"""Host CPU and memory through psutil."""

from __future__ import annotations

from typing import Any

import psutil

from collectors.base import Sample


class HostCollector:
    """CPU utilisation (total and per core) and memory use of the whole host."""

    name = "host"

    def open(self) -> None:
        # cpu_percent reports the time since its previous call: prime it so the first
        # sample covers the interval from now on, not since boot.
        psutil.cpu_percent(percpu=True)

    def sample(self, t: float) -> list[Sample]:
        per_core = psutil.cpu_percent(percpu=True)
        out = [Sample(t, self.name, "cpu", "cpu_util", "%", sum(per_core) / max(len(per_core), 1))]
        out += [Sample(t, self.name, f"cpu{i}", "cpu_util", "%", v) for i, v in enumerate(per_core)]
        mem = psutil.virtual_memory()
        out.append(Sample(t, self.name, "memory", "memory_used", "B", float(mem.used)))
        out.append(Sample(t, self.name, "memory", "memory_util", "%", float(mem.percent)))
        return out

    def close(self) -> None:
        return None

    def facts(self) -> dict[str, Any]:
        return {}
