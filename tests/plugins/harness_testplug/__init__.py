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

            if ray.get_runtime_context().get_node_id() == self.params.slow_node:
                self.sleep_s *= self.params.slow_factor

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
