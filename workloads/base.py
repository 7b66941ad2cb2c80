"""What every workload is: parameters, one measured iteration, a verification, its work.

A workload knows nothing of Ray or SQL. The on-node runner (``harness.node.runner``) owns the
loop: it calls :meth:`Workload.setup`, runs warm-up and measured iterations through the
timer the workload hands it, then :meth:`Workload.verify` and :meth:`Workload.teardown`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

# The errors live in a leaf module; re-exported here, where workloads have always found them.
from workloads.errors import UnsupportedParams as UnsupportedParams
from workloads.errors import VerificationError as VerificationError
from workloads.errors import WorkloadError as WorkloadError
from workloads.timers import IterationTimer, cuda_graph_step, l2_flusher, timer_for_device

DEVICE_PATTERN = r"^(cpu|cuda(:\d+)?)$"


@dataclass(frozen=True)
class MetricSpec:
    """A metric a workload reports: its name carries no unit; the unit is its own field."""

    name: str
    unit: str
    higher_is_better: bool
    description: str = ""


@dataclass(frozen=True)
class Work:
    """Work done by one measured iteration; rates are derived from it and the time.

    ``convention`` states how bytes were counted (DESIGN.md rule 4), stored with the trial.
    """

    bytes: float = 0.0
    flops: float = 0.0
    tokens: float = 0.0
    convention: str = ""


# Metrics the base class derives from per-iteration seconds and Work.
TIME = MetricSpec("time", "ms", False, "time of one iteration")
BANDWIDTH = MetricSpec("bandwidth", "GB/s", True, "bytes moved per second (1 GB = 1e9 B)")
THROUGHPUT = MetricSpec("throughput", "TFLOP/s", True, "floating-point operations per second")


# Kinds of ceiling a metric is measured against (resolved per trial by ``ceiling_keys``):
# the device's memory bandwidth, or its dense matmul throughput in the trial's dtype.
MEMORY_CEILING = "memory"
MATMUL_CEILING = "matmul"


@dataclass(frozen=True)
class WorkloadMeta:
    """What readers of the results store need to know of a trial's workload, stored with
    the trial so that they never import workload code."""

    version: str  # changes when the workload's conventions change (asv's benchmark version)
    primary_metric: str
    sweep_params: tuple[str, ...]  # the size-like params a report draws lines against
    ceilings: dict[str, str]  # metric -> peak key, e.g. throughput:cuda:bf16
    param_defaults: dict[str, Any]  # so displays can leave out what was not changed
    detail_metrics: tuple[str, ...] = ()  # shown with their p50/p90/p99 beside the primary


@dataclass(frozen=True)
class RankContext:
    """Where one rank of a multi-rank trial stands, and how to reach rank 0 (rendezvous)."""

    rank: int
    world_size: int
    local_rank: int  # index among the ranks on this node (selects cuda:<local_rank>)
    master_addr: str
    master_port: int
    hosts: tuple[str, ...] = ()  # hostname of every rank, in rank order
    node_ip: str = ""  # this rank's Ray node IP: its interface carries the group's traffic


class Params(BaseModel):
    """Base of every workload's parameter model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # Params added after trials of the workload were stored: left out of the canonical params
    # (and so of the params hash and the trial key) while they hold their default, so the
    # trials stored before keep matching the same measurement.
    added_later: ClassVar[tuple[str, ...]] = ()

    def canonical(self) -> dict[str, Any]:
        """The params as stored and hashed: JSON values, defaults filled in, except the
        ``added_later`` ones still at their default."""
        out = self.model_dump(mode="json")
        for name in self.added_later:
            if getattr(self, name) == type(self).model_fields[name].get_default(
                call_default_factory=True
            ):
                out.pop(name, None)
        return out


class DeviceParams(Params):
    """Parameters shared by workloads that run on a torch device."""

    device: str = Field("cpu", pattern=DEVICE_PATTERN, description="cpu, cuda or cuda:N")
    threads: int | None = Field(
        None, ge=1, description="host threads for CPU work (default: the CPUs the node grants)"
    )


class Workload(ABC):
    """One benchmark. Subclasses set the class attributes and implement the hooks."""

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[Params]]
    metrics: ClassVar[tuple[MetricSpec, ...]] = (TIME,)
    primary_metric: ClassVar[str] = "time"
    # Bump when a change makes new figures incomparable with old ones (what is counted,
    # how it is timed): results of different versions are never silently compared.
    version: ClassVar[str] = "1"
    # Size-like params, in order of preference, that a sweep plots against.
    sweep_params: ClassVar[tuple[str, ...]] = ()
    # Metrics whose percentiles (p50, p90, p99) a trial's row shows beside its primary figure:
    # the latencies of a load run, which one throughput figure does not describe.
    detail_metrics: ClassVar[tuple[str, ...]] = ()
    # Metric -> MEMORY_CEILING or MATMUL_CEILING: the peak the figure is a share of.
    ceilings: ClassVar[dict[str, str]] = {}
    multi_rank: ClassVar[bool] = False  # runs as one process per rank (collectives)
    # Moves its data over the network (ranks on other hosts, an endpoint): the runner counts
    # the host's TCP retransmissions around the loop, so a lossy link is flagged.
    network: ClassVar[bool] = False
    ranks_optional: ClassVar[bool] = False  # multi-rank when a benchmark gives ranks, else one
    min_ranks: ClassVar[int] = 1
    max_ranks: ClassVar[int | None] = None
    # Per-GPU placement (`each: gpu`): whether trials on different GPUs of one node may run
    # at once without disturbing each other (device-bound kernels: GEMM, device STREAM).
    # Otherwise they run one at a time, each with the whole node.
    gpu_isolated: ClassVar[bool] = False
    # Measures between two GPUs of one node (`each: gpu_pair`), which it sees as cuda:0 and
    # cuda:1: the params a benchmark must give for that (e.g. direction: p2p).
    gpu_pair: ClassVar[dict[str, Any] | None] = None
    # Measurement settings this workload needs unless a benchmark's own settings say
    # otherwise (they take precedence over the playbook's defaults).
    default_settings: ClassVar[dict[str, Any]] = {}

    def __init__(self, params: Params, ranks: RankContext | None = None) -> None:
        self.params = params
        self.ranks = ranks

    @abstractmethod
    def setup(self) -> None:
        """Allocate and fill inputs (random, seeded). Raise UnsupportedParams if impossible."""

    @abstractmethod
    def run_iteration(self) -> None:
        """Do the measured work once. No synchronisation: the timer handles that."""

    def peak_bytes(self) -> dict[str, int]:
        """The most memory this trial holds at once, per device (``"cpu"``, ``"cuda:0"``),
        set-up temporaries and verification included. Setup checks it against what is free
        (``devices.check_fits``) before allocating; empty means nothing worth checking."""
        return {}

    @abstractmethod
    def verify(self) -> None:
        """Check the output against a reference; raise VerificationError when wrong."""

    @abstractmethod
    def work(self) -> Work:
        """The work of one iteration."""

    def teardown(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release what setup allocated."""

    @classmethod
    def forwarded_env(cls, params: dict[str, Any]) -> tuple[str, ...]:
        """Environment variables the workload reads (credentials, endpoints): the driver
        hands its values to the trial's process, so they need not be set on every node."""
        return ()

    @classmethod
    def sent_secrets(cls, params: dict[str, Any]) -> tuple[tuple[str, str], ...]:
        """(environment variable, where its value is sent) for each credential these params
        send off the machine: the campaign checks each name against the secrets rule and
        shows it in the plan."""
        return ()

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> list[str]:
        """Problems with these (validated) params that only reading something can show (a
        trace file), one line each; found before anything runs."""
        return []

    @classmethod
    def preflight(cls, params: dict[str, Any]) -> list[str]:
        """What the outside world shows wrong with these params before a campaign stores or
        sends anything (an endpoint that does not answer from here), one line each."""
        return []

    @classmethod
    def primary_for(cls, params: dict[str, Any]) -> str:
        """The primary metric of a trial with these params (a load shape may answer another
        question than the default: an SLO search's answer is a rate)."""
        return cls.primary_metric

    @classmethod
    def shared_resources(cls, params: dict[str, Any]) -> tuple[str, ...]:
        """What trials with these params share outside their own node (a serving endpoint):
        two trials sharing one never run at once, wherever they are placed."""
        return ()

    @classmethod
    def isolated_on_gpu(cls, params: dict[str, Any]) -> bool:
        """Whether trials with these params on different GPUs of one node may run at once."""
        return cls.gpu_isolated

    @classmethod
    def ceiling_keys(cls, params: dict[str, Any]) -> dict[str, str]:
        """Metric -> the peak key it is measured against for these (canonical) params:
        ``bandwidth:<cpu|cuda>`` or ``throughput:<cpu|cuda>:<dtype>``."""
        device = "cuda" if str(params.get("device", "cpu")).startswith("cuda") else "cpu"
        out = {}
        for metric, kind in cls.ceilings.items():
            if kind == MEMORY_CEILING:
                out[metric] = f"bandwidth:{device}"
            elif kind == MATMUL_CEILING and params.get("dtype"):
                out[metric] = f"throughput:{device}:{params['dtype']}"
        return out

    @classmethod
    def meta(cls, params: dict[str, Any]) -> WorkloadMeta:
        """The facts stored with every trial of this workload (failed ones too)."""
        defaults = {
            k: _plain_default(f) for k, f in cls.Params.model_fields.items() if not f.is_required()
        }
        return WorkloadMeta(
            version=cls.version,
            primary_metric=cls.primary_for(params),
            sweep_params=tuple(p for p in cls.sweep_params if p in params),
            ceilings=cls.ceiling_keys(params),
            param_defaults=defaults,
            detail_metrics=cls.detail_metrics,
        )

    def device(self) -> str:
        """The device string the work runs on (``cpu`` or ``cuda:N``)."""
        return str(getattr(self.params, "device", "cpu"))

    def make_timer(self) -> IterationTimer:
        """The timer for this workload's device: CUDA events on a GPU, perf_counter_ns else."""
        return timer_for_device(self.device())

    def agree(self, stop: bool, batch: int) -> tuple[bool, int]:
        """Make every rank take the same stop decision and batch size (rank 0's).

        Single-rank workloads have nothing to agree with; multi-rank ones must override this,
        or ranks would run different numbers of iterations and deadlock.
        """
        return stop, batch

    def timing_hooks(
        self, flush_l2: bool, cuda_graph: bool
    ) -> tuple[Callable[[], None], Callable[[], None] | None, dict[str, Any]]:
        """(the step to time, a flush to run untimed before each step or None, what applied).

        Both options are CUDA techniques (triton's do_bench); on a host device they are not
        applied, and the returned facts say so rather than pretending.
        """
        on_gpu = self.device().startswith("cuda")
        facts: dict[str, Any] = {
            "flush_l2": flush_l2 and on_gpu,
            "cuda_graph": cuda_graph and on_gpu,
        }
        step: Callable[[], None] = self.run_iteration
        flush = None
        if (flush_l2 or cuda_graph) and not on_gpu:
            facts["timing_note"] = "flush_l2/cuda_graph apply to CUDA devices; not applied"
        if cuda_graph and on_gpu:
            step = cuda_graph_step(self.run_iteration, self.device())
        if flush_l2 and on_gpu:
            flush = l2_flusher(self.device())
        return step, flush, facts

    def gpu_uuids(self) -> list[str]:
        """UUIDs of the GPUs this trial runs on (after setup), so telemetry watches those."""
        if not self.device().startswith("cuda"):
            return []
        import torch

        from workloads.devices import gpu_uuid

        uuid = gpu_uuid(torch.device(self.device()))
        return [uuid] if uuid else []

    def context(self) -> dict[str, Any]:
        """Facts about how the trial ran (threads, backend flags), stored with it."""
        return {}

    def telemetry(self) -> list[Any]:
        """Readings the workload took itself (``collectors.base.Sample``), stored with the
        node's telemetry: a serving endpoint's own metrics during the load."""
        return []

    def metric_specs(self) -> tuple[MetricSpec, ...]:
        """The metrics this instance reports (after setup; some depend on the rank count)."""
        return self.metrics

    def derive(self, seconds: Sequence[float]) -> dict[str, list[float]]:
        """Per-iteration values of every metric in ``metrics`` from per-iteration seconds."""
        work = self.work()
        out: dict[str, list[float]] = {}
        for spec in self.metrics:
            if spec.name == TIME.name:
                out[spec.name] = [s * 1e3 for s in seconds]
            elif spec.name == BANDWIDTH.name:
                out[spec.name] = [work.bytes / s / 1e9 for s in seconds]
            elif spec.name == THROUGHPUT.name:
                out[spec.name] = [work.flops / s / 1e12 for s in seconds]
            else:
                raise NotImplementedError(f"{self.name} must derive metric {spec.name!r} itself")
        return out

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """Plain description for listings: parameters with types and defaults, metrics."""
        schema = cls.Params.model_json_schema()
        params = []
        for pname, field in cls.Params.model_fields.items():
            prop = schema.get("properties", {}).get(pname, {})
            params.append(
                {
                    "name": pname,
                    "type": _type_label(prop),
                    "default": None if field.is_required() else _plain_default(field),
                    "required": field.is_required(),
                    "description": field.description or "",
                }
            )
        return {
            "name": cls.name,
            "description": cls.description,
            "params": params,
            "metrics": [
                {
                    "name": m.name,
                    "unit": m.unit,
                    "higher_is_better": m.higher_is_better,
                    "description": m.description,
                }
                for m in cls.metrics
            ],
            "primary_metric": cls.primary_metric,
            "version": cls.version,
            "sweep_params": list(cls.sweep_params),
            "ceilings": dict(cls.ceilings),
        }


def _plain_default(field: Any) -> Any:
    value = field.get_default(call_default_factory=True)
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _type_label(prop: dict[str, Any]) -> str:
    """A short human type from a JSON-schema property (enum values spelled out)."""
    if "enum" in prop:
        return "|".join(str(v) for v in prop["enum"])
    for union in ("anyOf", "oneOf"):
        if union in prop:
            return " or ".join(_type_label(p) for p in prop[union])
    if "$ref" in prop:  # a nested model: its name says what it holds
        return prop["$ref"].rsplit("/", 1)[-1] + " mapping"
    if "const" in prop:
        return str(prop["const"])
    return str(prop.get("type", "any"))
