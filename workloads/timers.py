"""Per-iteration timers: CUDA events for device work, perf_counter_ns for host work.

Both record one start/stop pair per iteration and hand back seconds on ``collect``. The
CUDA timer does not synchronise between iterations (the queue stays full, as in triton's
do_bench); ``collect`` synchronises once and reads the event pairs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol


class IterationTimer(Protocol):
    """Times iterations one start/stop pair at a time."""

    kind: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def synchronize(self) -> None: ...

    def collect(self) -> list[float]:
        """Seconds of each iteration stopped since the last collect (synchronises first)."""
        ...


class HostTimer:
    """Wall-clock timer on the monotonic ``perf_counter_ns``."""

    kind = "perf_counter_ns"

    def __init__(self) -> None:
        self._t0 = 0
        self._pending: list[float] = []

    def start(self) -> None:
        self._t0 = time.perf_counter_ns()

    def stop(self) -> None:
        self._pending.append((time.perf_counter_ns() - self._t0) * 1e-9)

    def synchronize(self) -> None:
        return None

    def collect(self) -> list[float]:
        out, self._pending = self._pending, []
        return out


class CudaEventTimer:
    """One pair of CUDA events per iteration on the current stream of ``device``.

    Nothing but the two records lies between them on the host side: the events come from a
    pool (reused after ``collect``) and the stream is looked up once. A step shorter than
    its launch leaves the GPU waiting on the host, and then whatever the host did between the
    records was timed too (a 1024^3 bf16 GEMM replayed from a CUDA graph read half of a bare
    loop's figure on an H200 while each stop created its event and looked the stream up).
    """

    kind = "cuda_event"

    def __init__(self, device: str) -> None:
        import torch

        self._torch = torch
        self._device = torch.device(device)
        self._stream = torch.cuda.current_stream(self._device)
        self._free: list[Any] = []
        self._pairs: list[tuple[Any, Any]] = []
        self._pair: tuple[Any, Any] | None = None

    def _event(self) -> Any:
        return self._free.pop() if self._free else self._torch.cuda.Event(enable_timing=True)

    def start(self) -> None:
        self._pair = (self._event(), self._event())
        self._pair[0].record(self._stream)

    def stop(self) -> None:
        pair = self._pair
        pair[1].record(self._stream)  # type: ignore[index]
        self._pairs.append(pair)  # type: ignore[arg-type]

    def synchronize(self) -> None:
        self._torch.cuda.synchronize(self._device)

    def collect(self) -> list[float]:
        self.synchronize()
        out = [s.elapsed_time(e) * 1e-3 for s, e in self._pairs]
        for pair in self._pairs:
            self._free.extend(pair)
        self._pairs = []
        return out


def timer_for_device(device: str) -> IterationTimer:
    """CUDA events for ``cuda*`` devices, the host clock otherwise."""
    if device.startswith("cuda"):
        return CudaEventTimer(device)
    return HostTimer()


L2_FLUSH_BYTES = 256 * 2**20  # triton's do_bench: larger than any current GPU's L2


def l2_flusher(device: str) -> Callable[[], None]:
    """A callable that evicts the GPU's L2 by zeroing a 256 MB buffer (run it untimed)."""
    import torch

    buf = torch.empty(L2_FLUSH_BYTES, dtype=torch.int8, device=device)
    return buf.zero_


def cuda_graph_step(fn: Callable[[], None], device: str) -> Callable[[], None]:
    """Capture one call of ``fn`` in a CUDA graph and return its replay.

    Replay removes the CPU launch overhead of every kernel in the step (it does not flush
    L2). The capture is preceded by warm-up calls on a side stream, as CUDA requires.
    """
    import torch

    dev = torch.device(device)
    side = torch.cuda.Stream(dev)
    side.wait_stream(torch.cuda.current_stream(dev))
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream(dev).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    torch.cuda.synchronize(dev)
    return graph.replay
