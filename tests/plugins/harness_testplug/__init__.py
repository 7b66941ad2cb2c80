"""A third-party workload plugin used by the tests, registered through a real entry point.

``test.flaky`` fails in setup while its marker file exists (so a resume can succeed after
the file is removed), can sleep per iteration (for timeouts and duration rules; longer on
one named Ray node, for the fleet checks), and can corrupt its output (for verification
failures). It counts every iteration it runs.
"""

from __future__ import annotations

import os
import time

from pydantic import Field

from workloads.base import TIME, Params, VerificationError, Work, Workload


class FlakyParams(Params):
    marker: str = Field("", description="setup fails while this file exists")
    started: str = Field("", description="a file created when setup begins")
    sleep_s: float = Field(0.0, ge=0, description="sleep per iteration")
    corrupt: bool = Field(False, description="produce a wrong result")
    size: int = Field(1000, ge=1)
    slow_node: str = Field("", description="Ray node id on which each sleep is slow_factor x")
    slow_factor: float = Field(1.0, ge=1)
    slow_once: str = Field("", description="a file: slow_node is slow only while it is absent")


class FlakyWorkload(Workload):
    name = "test.flaky"
    description = "test workload: sums a list, fails on demand"
    Params = FlakyParams
    metrics = (TIME,)

    params: FlakyParams

    def setup(self) -> None:
        if self.params.started:
            open(self.params.started, "w").close()
        if self.params.marker and os.path.exists(self.params.marker):
            raise RuntimeError(f"marker {self.params.marker} present")
        self.data = list(range(self.params.size))
        self.total = -1
        self.calls = 0
        self.sleep_s = self.params.sleep_s
        if self.params.slow_node:  # a deliberately slow node, for the fleet-health tests
            import ray

            once = self.params.slow_once
            if ray.get_runtime_context().get_node_id() == self.params.slow_node and not (
                once and os.path.exists(once)
            ):
                self.sleep_s *= self.params.slow_factor
                if once:  # a transient: the next trial on it is not slow
                    open(once, "w").close()

    def run_iteration(self) -> None:
        self.calls += 1
        if self.sleep_s:
            time.sleep(self.sleep_s)
        self.total = sum(self.data) + (1 if self.params.corrupt else 0)

    def verify(self) -> None:
        want = self.params.size * (self.params.size - 1) // 2
        if self.total != want:
            raise VerificationError(f"sum is {self.total}, expected {want}")

    def work(self) -> Work:
        return Work()

    def context(self) -> dict:
        return {"calls": self.calls}


class ProbeParams(Params):
    device: str = Field("cuda", pattern=r"^(cpu|cuda(:\d+)?)$")
    peer: str = Field("cuda:1", description="the pair's second GPU (each: gpu_pair)")
    sleep_s: float = Field(0.05, ge=0, description="sleep per iteration")
    isolated: bool = Field(True, description="whether neighbouring GPUs may run at once")
    slow_gpu: str = Field("", description="'<ray node id>/<gpu id>' on which sleeps are 3x")


class GpuProbeWorkload(Workload):
    """Stands in for a GPU kernel where Ray's GPUs are fake (this machine has none): it never
    touches CUDA, and records the GPUs it was shown and when it ran, so the tests can check
    per-GPU placement and which trials overlapped."""

    name = "test.gpu_probe"
    description = "test workload: records CUDA_VISIBLE_DEVICES and its time window"
    Params = ProbeParams
    metrics = (TIME,)
    gpu_pair = {"device": "cuda:0", "peer": "cuda:1"}

    params: ProbeParams

    @classmethod
    def isolated_on_gpu(cls, params: dict) -> bool:
        return bool(params.get("isolated", True))

    def setup(self) -> None:
        import ray

        self.visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        self.node = ray.get_runtime_context().get_node_id()
        self.ray_gpus = [str(g) for g in ray.get_gpu_ids()]
        self.sleep_s = self.params.sleep_s
        if self.params.slow_gpu == f"{self.node}/{self.visible}":
            self.sleep_s *= 3
        self.began = time.time()

    def make_timer(self):  # the device is fake: time on the host clock
        from workloads.timers import HostTimer

        return HostTimer()

    def gpu_uuids(self) -> list[str]:
        return [f"GPU-fake-{self.node[:8]}-{g}" for g in self.visible.split(",") if g]

    def run_iteration(self) -> None:
        time.sleep(self.sleep_s)

    def verify(self) -> None:
        pass

    def work(self) -> Work:
        return Work()

    def context(self) -> dict:
        return {
            "visible": self.visible,
            "ray_gpus": self.ray_gpus,
            "began": self.began,
            "ended": time.time(),
        }
