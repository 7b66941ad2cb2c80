"""``network.p2p``: node-to-node latency and bandwidth by a two-rank ping-pong.

Rank 0 sends ``size_bytes`` to rank 1, which sends it back; one iteration is the round
trip as rank 0 times it. latency = round trip / 2; bandwidth = size_bytes / (round trip / 2),
one way. Over gloo this is TCP between the two nodes, so a slow link shows up.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from workloads.base import BANDWIDTH, MetricSpec, UnsupportedParams, VerificationError, Work
from workloads.collective import CollectiveParams, CollectiveWorkload
from workloads.lazy import lazy_module

torch = lazy_module("torch")

LATENCY = MetricSpec("latency", "ms", False, "half the round-trip time")


class P2PParams(CollectiveParams):
    size_bytes: int = Field(4096, ge=1, description="bytes each way")


class P2PWorkload(CollectiveWorkload):
    name = "network.p2p"
    description = "node-to-node ping-pong: latency and one-way bandwidth between two ranks"
    op = "pingpong"
    min_ranks = 2
    max_ranks = 2
    Params = P2PParams
    metrics = (BANDWIDTH, LATENCY)
    primary_metric = "latency"

    def setup(self) -> None:
        if self.ranks is not None and self.ranks.world_size != 2:
            raise UnsupportedParams("network.p2p runs over exactly 2 ranks: ranks: 2")
        super().setup()

    def _buffers(self, make: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        return make(self.count), make(self.count)

    def _collective(self, inp: torch.Tensor, out: torch.Tensor | None) -> None:
        assert out is not None
        if self.rank == 0:
            torch.distributed.send(inp, 1)
            torch.distributed.recv(out, 1)
        else:
            torch.distributed.recv(out, 0)
            torch.distributed.send(out, 0)  # echo what arrived

    def verify(self) -> None:
        inp = self._pattern(7, self.count)
        assert self.out is not None
        self.out.zero_()
        self._collective(inp, self.out)
        wrong = int((self.out.double() != inp.double()).sum().item())
        total = torch.tensor([wrong], dtype=torch.float64, device=self.dev)
        torch.distributed.all_reduce(total)
        self.wrong = int(total.item())
        if self.wrong:
            raise VerificationError(f"#wrong = {self.wrong} elements after the round trip")

    def metric_specs(self) -> tuple[MetricSpec, ...]:
        return self.metrics

    def derive(self, seconds: list[float]) -> dict[str, list[float]]:
        mine = torch.tensor(seconds, dtype=torch.float64, device=self.dev)
        both = torch.empty(2 * len(seconds), dtype=torch.float64, device=self.dev)
        self.all_gather_single(both, mine)
        round_trips = both.view(2, len(seconds))[0].tolist()  # as rank 0 timed them
        return {
            "latency": [t / 2 * 1e3 for t in round_trips],
            "bandwidth": [self.total_bytes / (t / 2) / 1e9 for t in round_trips],
        }

    def work(self) -> Work:
        return Work(bytes=self.total_bytes, convention="bytes one way per half round trip")

    def context(self) -> dict[str, Any]:
        hosts = self.ranks.hosts if self.ranks else ()
        return {
            "backend": self.backend,
            "bytes": self.total_bytes,
            "hosts": list(hosts),
            "wrong": getattr(self, "wrong", None),
            **getattr(self, "joined", {}),
        }
