"""Collectives over torch.distributed (gloo on CPU, NCCL on CUDA), one process per rank.

Sizes and bus-bandwidth factors are nccl-tests' (its PERFORMANCE.md). ``size_bytes`` is the
total S of the table below; for all_gather, reduce_scatter and all_to_all each rank's chunk
is S/n rounded down to 16 bytes, and S is recomputed from it.

    op              S (bytes)              busbw = algbw x
    all_reduce      count x elem           2(n-1)/n
    all_gather      count x elem x n       (n-1)/n
    reduce_scatter  count x elem x n       (n-1)/n
    all_to_all      count x elem x n       (n-1)/n
    broadcast       count x elem           1
    reduce          count x elem           1
    send_recv       count x elem           1   (a ring: rank r sends to r+1, receives from r-1)

algbw = S / time / 1e9. Each rank times its own calls; the trial's time per iteration is a
cross-rank reduction of those (``rank_reduction``, stored with the trial), and every rank's
own times are kept as ``rank_time.<r>``. A check pass with patterned data counts wrong
elements on every rank and sums them (nccl-tests' #wrong); any wrong element fails the trial.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import Field

from workloads.base import (
    DEVICE_PATTERN,
    TIME,
    MetricSpec,
    Params,
    UnsupportedParams,
    VerificationError,
    Work,
    Workload,
)
from workloads.devices import DTYPES, generator
from workloads.lazy import lazy_module
from workloads.rendezvous import join

torch = lazy_module("torch")


def tensor_collectives() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """(all-gather, reduce-scatter) into and from one tensor: torch 2.13's names, or on older
    releases the only ones, ``*_tensor``. Resolved once in setup, not per timed call."""
    dist = torch.distributed
    return (
        getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor,
        getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor,
    )


ALGBW = MetricSpec("algbw", "GB/s", True, "algorithm bandwidth, S / time (nccl-tests)")
BUSBW = MetricSpec("busbw", "GB/s", True, "bus bandwidth, algbw x the collective's factor")
GATHERED = ("all_gather", "reduce_scatter", "all_to_all")
STRAGGLER_RATIO = 1.25  # a rank's median time this far above its peers' median


def busbw_factor(op: str, n: int) -> float:
    """nccl-tests' bus-bandwidth factor of a collective over n ranks."""
    if op == "all_reduce":
        return 2 * (n - 1) / n
    if op in GATHERED:
        return (n - 1) / n
    return 1.0


class CollectiveParams(Params):
    size_bytes: int = Field(2**20, ge=1, description="total message size S (nccl-tests)")
    dtype: Literal["fp32", "fp64", "fp16", "bf16"] = "fp32"
    device: str = Field("cpu", pattern=DEVICE_PATTERN, description="cpu (gloo) or cuda (NCCL)")
    rank_reduction: Literal["mean", "max", "min"] = Field(
        "mean", description="per-iteration reduction of the ranks' times (nccl-tests: mean)"
    )
    corrupt_rank: int | None = Field(
        None, ge=0, description="fault injection: this rank corrupts its check data"
    )


class CollectiveWorkload(Workload):
    """Base of the collective.* workloads; subclasses set ``op``."""

    op: ClassVar[str]
    multi_rank = True
    network = True
    # nccl-tests runs every collective on one rank too (busbw factor 0 for all_reduce): the
    # single-GPU check of the NCCL path. send_recv needs a peer.
    min_ranks = 1
    Params = CollectiveParams
    metrics = (BUSBW, ALGBW, TIME)
    primary_metric = "busbw"
    sweep_params = ("size_bytes",)

    params: CollectiveParams

    # rendezvous and buffers ------------------------------------------------------------------
    def setup(self) -> None:
        if self.ranks is None:
            raise UnsupportedParams(f"{self.name} runs over ranks: give the benchmark `ranks:`")
        ctx, p = self.ranks, self.params
        self.n, self.rank = ctx.world_size, ctx.rank
        if self.n < self.min_ranks:
            raise UnsupportedParams(f"{self.name} needs at least {self.min_ranks} ranks")
        on_gpu = p.device.startswith("cuda")
        self.dev = torch.device("cuda", ctx.local_rank) if on_gpu else torch.device("cpu")
        if on_gpu:
            if not torch.cuda.is_available() or ctx.local_rank >= torch.cuda.device_count():
                raise UnsupportedParams(f"rank {ctx.rank} has no CUDA device {ctx.local_rank}")
            torch.cuda.set_device(self.dev)
        self.backend = "nccl" if on_gpu else "gloo"
        self.joined = join(ctx, self.backend)
        self.all_gather_single, self.reduce_scatter_single = tensor_collectives()
        self.dtype = DTYPES[p.dtype]
        self.elem = torch.empty((), dtype=self.dtype).element_size()
        if self.op in GATHERED:
            chunk = (p.size_bytes // self.n) // 16 * 16
            self.count = chunk // self.elem
            self.total_bytes = self.count * self.elem * self.n
        else:
            self.count = p.size_bytes // self.elem
            self.total_bytes = self.count * self.elem
        if self.count < 1:
            raise UnsupportedParams(
                f"size_bytes={p.size_bytes} holds no {p.dtype} element per rank"
            )
        gen = generator(self.dev, 31 + self.rank)
        self.inp, self.out = self._buffers(
            lambda m: torch.rand(m, device=self.dev, generator=gen).to(self.dtype)
        )
        torch.distributed.barrier()

    def _buffers(self, make: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        c, n = self.count, self.n
        shapes = {
            "all_gather": (c, c * n),
            "reduce_scatter": (c * n, c),
            "all_to_all": (c * n, c * n),
            "send_recv": (c, c),
        }
        inp, out = shapes.get(self.op, (c, None))
        return make(inp), make(out) if out else None

    def run_iteration(self) -> None:
        self._collective(self.inp, self.out)

    def _collective(self, inp: torch.Tensor, out: torch.Tensor | None) -> None:
        op = self.op
        if op == "all_reduce":
            torch.distributed.all_reduce(inp)
        elif op == "all_gather":
            self.all_gather_single(out, inp)
        elif op == "reduce_scatter":
            self.reduce_scatter_single(out, inp)
        elif op == "all_to_all":
            torch.distributed.all_to_all_single(out, inp)
        elif op == "broadcast":
            torch.distributed.broadcast(inp, src=0)
        elif op == "reduce":
            torch.distributed.reduce(inp, dst=0)
        else:  # send_recv ring
            ops = [
                torch.distributed.P2POp(torch.distributed.isend, inp, (self.rank + 1) % self.n),
                torch.distributed.P2POp(torch.distributed.irecv, out, (self.rank - 1) % self.n),
            ]
            for req in torch.distributed.batch_isend_irecv(ops):
                req.wait()

    def agree(self, stop: bool, batch: int) -> tuple[bool, int]:
        decision = torch.tensor([float(stop), float(batch)], dtype=torch.float64, device=self.dev)
        torch.distributed.broadcast(decision, src=0)
        return bool(decision[0].item()), int(decision[1].item())

    # verification --------------------------------------------------------------------------
    def _pattern(self, seed: int, length: int) -> torch.Tensor:
        """Small integers (exact in every dtype here for up to 42 ranks of sums)."""
        values = torch.arange(length, device=self.dev) % 3 + (seed % 4) + 1
        return values.to(self.dtype)

    def _expected(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Check inputs for this rank and the output it must then hold (None: unspecified)."""
        c, n, r, pat = self.count, self.n, self.rank, self._pattern
        op = self.op
        if op == "all_reduce":
            return pat(r, c), sum(pat(q, c).double() for q in range(n))
        if op == "all_gather":
            return pat(r, c), torch.cat([pat(q, c) for q in range(n)]).double()
        if op == "reduce_scatter":
            inp = torch.cat([pat(r + j, c) for j in range(n)])
            return inp, sum(pat(q + r, c).double() for q in range(n))
        if op == "all_to_all":
            inp = torch.cat([pat(r * n + j, c) for j in range(n)])
            return inp, torch.cat([pat(j * n + r, c) for j in range(n)]).double()
        if op == "broadcast":
            return pat(r, c), pat(0, c).double()
        if op == "reduce":
            return pat(r, c), sum(pat(q, c).double() for q in range(n)) if r == 0 else None
        return pat(r, c), pat((r - 1) % n, c).double()  # send_recv

    def verify(self) -> None:
        inp, want = self._expected()
        if self.params.corrupt_rank == self.rank:
            inp[0] += 1  # fault injection: this rank's data goes in wrong
        out = self.out if self.out is not None else inp
        if self.out is not None:
            out.zero_()
        self._collective(inp, self.out)
        got = out if self.out is not None else inp
        wrong = 0 if want is None else int((got.double() != want).sum().item())
        total = torch.tensor([wrong], dtype=torch.float64, device=self.dev)
        torch.distributed.all_reduce(total)
        self.wrong = int(total.item())
        if self.wrong:
            raise VerificationError(
                f"#wrong = {self.wrong} elements across {self.n} ranks ({self.op} check pass)"
            )

    # figures --------------------------------------------------------------------------------
    def metric_specs(self) -> tuple[MetricSpec, ...]:
        ranks = tuple(
            MetricSpec(f"rank_time.{r}", "ms", False, f"rank {r}'s own time") for r in range(self.n)
        )
        return self.metrics + ranks

    def derive(self, seconds: list[float]) -> dict[str, list[float]]:
        mine = torch.tensor(seconds, dtype=torch.float64, device=self.dev)
        every = torch.empty(self.n * len(seconds), dtype=torch.float64, device=self.dev)
        self.all_gather_single(every, mine)
        per_rank = every.view(self.n, len(seconds)).cpu().tolist()
        reduce = {"mean": statistics.fmean, "max": max, "min": min}[self.params.rank_reduction]
        times = [reduce(col) for col in zip(*per_rank, strict=True)]
        factor = busbw_factor(self.op, self.n)
        algbw = [self.total_bytes / t / 1e9 for t in times]
        out = {
            "time": [t * 1e3 for t in times],
            "algbw": algbw,
            "busbw": [a * factor for a in algbw],
        }
        for r, row in enumerate(per_rank):
            out[f"rank_time.{r}"] = [t * 1e3 for t in row]
        medians = [statistics.median(row) for row in per_rank]
        self.slowest = max(range(self.n), key=medians.__getitem__)
        peers = [m for r, m in enumerate(medians) if r != self.slowest]
        # One rank has no peers to straggle behind.
        self.straggler = bool(peers) and (
            medians[self.slowest] > STRAGGLER_RATIO * statistics.median(peers)
        )
        return out

    def work(self) -> Work:
        return Work(bytes=self.total_bytes, convention="nccl-tests S (see busbw_factor)")

    def context(self) -> dict[str, Any]:
        hosts = self.ranks.hosts if self.ranks else ()
        slowest = getattr(self, "slowest", None)
        return {
            "backend": self.backend,
            "world_size": self.n,
            "count_per_rank": self.count,
            "bytes_S": self.total_bytes,
            "busbw_factor": busbw_factor(self.op, self.n),
            "cross_rank_reduction": self.params.rank_reduction,
            "wrong": getattr(self, "wrong", None),
            "slowest_rank": slowest,
            "slowest_host": hosts[slowest] if slowest is not None and hosts else None,
            "straggler": getattr(self, "straggler", None),
            **getattr(self, "joined", {}),
        }

    def teardown(self) -> None:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _collective(op: str) -> type[CollectiveWorkload]:
    return type(
        f"{op.title().replace('_', '')}Workload",
        (CollectiveWorkload,),
        {
            "op": op,
            "min_ranks": 2 if op == "send_recv" else 1,
            "name": f"collective.{op}",
            "description": f"{op} over torch.distributed (gloo/NCCL), nccl-tests sizes and busbw",
            "__module__": __name__,
        },
    )


AllReduce = _collective("all_reduce")
AllGather = _collective("all_gather")
ReduceScatter = _collective("reduce_scatter")
AllToAll = _collective("all_to_all")
Broadcast = _collective("broadcast")
Reduce = _collective("reduce")
SendRecv = _collective("send_recv")
