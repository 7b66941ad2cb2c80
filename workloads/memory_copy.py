"""``memory.copy``: host<->device, device-to-device and GPU peer-to-peer copy bandwidth.

Byte counting is a parameter and is stored with every figure: ``one_way`` counts the bytes
transferred once (nvbandwidth, and bandwidthTest for host<->device); ``read_write`` counts
a copy inside one memory twice, read plus write (bandwidthTest's device-to-device figure).
Never compare figures across the two conventions. ``h2h`` (a host memcpy) is the CPU path.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from workloads.base import (
    BANDWIDTH,
    DEVICE_PATTERN,
    TIME,
    Params,
    UnsupportedParams,
    VerificationError,
    Work,
    Workload,
)
from workloads.devices import check_peak, device_setup, generator, resolve_device
from workloads.lazy import lazy_module

torch = lazy_module("torch")

CONVENTIONS = {
    "one_way": "bytes transferred once per copy (nvbandwidth; bandwidthTest host<->device)",
    "read_write": "bytes read plus bytes written (bandwidthTest device-to-device)",
}


class CopyParams(Params):
    direction: Literal["h2d", "d2h", "d2d", "p2p", "h2h"] = Field(
        "h2d", description="h2d, d2h, d2d (one GPU), p2p (device -> peer), h2h (host memcpy)"
    )
    size_mib: float = Field(256.0, gt=0, description="bytes per copy, MiB")
    device: str = Field("cuda", pattern=DEVICE_PATTERN, description="the GPU (cpu for h2h)")
    peer: str = Field("cuda:1", pattern=r"^cuda:\d+$", description="destination GPU for p2p")
    pinned: bool = Field(True, description="page-locked host buffer (h2d, d2h)")
    count: Literal["one_way", "read_write"] = Field("one_way", description="byte counting")
    threads: int | None = Field(None, ge=1, description="host threads (h2h)")

    @model_validator(mode="after")
    def _device_fits_direction(self) -> CopyParams:
        on_host = self.device == "cpu"
        if self.direction == "h2h" and not on_host:
            raise ValueError("direction h2h copies host memory: set device: cpu")
        if self.direction != "h2h" and on_host:
            raise ValueError(f"direction {self.direction} needs a CUDA device, not cpu")
        if self.direction == "p2p" and self.peer == self.device:
            raise ValueError("p2p needs a peer GPU other than the source device")
        if self.count == "read_write" and self.direction not in ("d2d", "h2h"):
            raise ValueError("read_write counting applies to copies within one memory (d2d, h2h)")
        return self


class CopyWorkload(Workload):
    name = "memory.copy"
    description = "copy bandwidth: host<->device (pinned/pageable), d2d, GPU peer-to-peer, host"
    Params = CopyParams
    metrics = (BANDWIDTH, TIME)
    primary_metric = "bandwidth"
    sweep_params = ("size_mib",)
    gpu_pair = {"direction": "p2p", "device": "cuda:0", "peer": "cuda:1"}

    params: CopyParams

    @classmethod
    def isolated_on_gpu(cls, params: dict[str, Any]) -> bool:
        """A copy within one GPU's memory disturbs no other GPU; host<->device copies share
        the host's memory and PCIe root with their neighbours."""
        return params.get("direction") == "d2d"

    @classmethod
    def ceiling_keys(cls, params: dict[str, Any]) -> dict[str, str]:
        """Only a d2d copy counted read + write is bounded by the memory's rated figure;
        host<->device copies run at link speed, and one-way counting halves the traffic."""
        if params.get("direction") == "d2d" and params.get("count") == "read_write":
            return {"bandwidth": "bandwidth:cuda"}
        return {}

    def setup(self) -> None:
        p = self.params
        on = device_setup(p.device, p.threads)
        self.dev, self.threads = on.dev, on.threads
        self.n = int(p.size_mib * 2**20) // 4  # fp32 elements
        if self.n < 1:
            raise UnsupportedParams(f"size_mib={p.size_mib} is smaller than one element")
        nbytes = self.n * 4
        host = torch.device("cpu")
        src_dev, dst_dev = {
            "h2h": (host, host),
            "h2d": (host, self.dev),
            "d2h": (self.dev, host),
            "d2d": (self.dev, self.dev),
            "p2p": (self.dev, None),
        }[p.direction]
        self.peer_access = None
        if p.direction == "p2p":
            dst_dev = resolve_device(p.peer)
            torch.cuda.set_device(self.dev)
            self.peer_access = torch.cuda.can_device_access_peer(self.dev, dst_dev)
        # src's device also holds dst's copy for verification (and a pinned copy, briefly).
        peaks = {str(src_dev): 2 * nbytes}
        peaks.setdefault(str(dst_dev), nbytes)
        self._peaks = peaks
        check_peak(peaks)
        pin = p.pinned and p.direction in ("h2d", "d2h")
        self.src = torch.rand(self.n, device=src_dev, generator=generator(src_dev, 99))
        self.dst = torch.rand(self.n, device=dst_dev, generator=generator(dst_dev, 98))
        if pin:
            self.src, self.dst = (
                t.pin_memory() if t.device.type == "cpu" else t for t in (self.src, self.dst)
            )
        self.non_blocking = pin

    def run_iteration(self) -> None:
        self.dst.copy_(self.src, non_blocking=self.non_blocking)

    def peak_bytes(self) -> dict[str, int]:
        return dict(self._peaks)

    def verify(self) -> None:
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
        got = self.dst if self.dst.device == self.src.device else self.dst.to(self.src.device)
        if not torch.equal(got, self.src):
            wrong = int((got != self.src).sum())
            raise VerificationError(f"{wrong} of {self.n} copied elements differ from the source")

    def work(self) -> Work:
        factor = 2 if self.params.count == "read_write" else 1
        return Work(bytes=factor * self.n * 4, convention=CONVENTIONS[self.params.count])

    def context(self) -> dict[str, Any]:
        return {
            "bytes_per_copy": self.n * 4,
            "byte_convention": self.params.count,
            "convention": CONVENTIONS[self.params.count],
            "pinned": self.non_blocking,
            "peer_access": self.peer_access,
            "threads": self.threads,
        }

    def teardown(self) -> None:
        del self.src, self.dst
