"""A background thread that samples the requested sources at a fixed interval."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from collectors.amd import AmdSmiCollector
from collectors.base import Collector, Sample, SourceStatus, SourceUnavailable
from collectors.host import HostCollector
from collectors.nvml import NvmlCollector
from collectors.rapl import RaplCollector

# name -> factory taking the UUIDs of the GPUs the trial uses (only NVML can select by them).
SOURCES: dict[str, Callable[[Sequence[str]], Collector]] = {
    "host": lambda uuids: HostCollector(),
    "nvml": lambda uuids: NvmlCollector(uuids),
    "rapl": lambda uuids: RaplCollector(),
    "amdsmi": lambda uuids: AmdSmiCollector(),
}


def known_sources() -> list[str]:
    """Names a playbook may ask for."""
    return sorted(SOURCES)


class TelemetrySampler:
    """Samples ``sources`` every ``interval_s`` seconds between :meth:`start` and :meth:`stop`.

    A source that cannot open is reported in :attr:`statuses` as unavailable, with the
    reason; one that fails while sampling is closed and reported likewise. A sample is taken
    at start and at stop, so even a short window has its two edges.
    """

    def __init__(
        self, sources: Sequence[str], interval_s: float, gpu_uuids: Sequence[str] = ()
    ) -> None:
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self.statuses: dict[str, SourceStatus] = {}
        self._collectors: list[Collector] = []
        for name in sources:
            factory = SOURCES.get(name)
            if factory is None:
                self.statuses[name] = SourceStatus(name, False, "unknown telemetry source")
                continue
            collector = factory(gpu_uuids)
            try:
                collector.open()
            except SourceUnavailable as exc:
                self.statuses[name] = SourceStatus(name, False, str(exc))
                continue
            self._collectors.append(collector)
            self.statuses[name] = SourceStatus(name, True)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.window: tuple[float, float] | None = None

    def _sample_all(self) -> None:
        t = time.time()
        for c in list(self._collectors):
            try:
                self.samples.extend(c.sample(t))
            except Exception as exc:  # a sensor failing mid-run must not fail the trial
                self.statuses[c.name] = SourceStatus(c.name, False, f"sampling failed: {exc}")
                self._collectors.remove(c)
                c.close()

    def _loop(self) -> None:
        next_t = time.monotonic() + self.interval_s
        while not self._stop.wait(max(0.0, next_t - time.monotonic())):
            self._sample_all()
            next_t += self.interval_s

    def start(self) -> None:
        """Take the first sample and start the background thread."""
        self.window = (time.time(), float("nan"))
        self._sample_all()
        self._thread = threading.Thread(target=self._loop, name="telemetry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, take the closing sample and close every source."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample_all()
        if self.window is not None:
            self.window = (self.window[0], time.time())
        for c in self._collectors:
            c.close()
        self._collectors = []
