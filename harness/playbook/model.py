"""The playbook's data model: pydantic models for every field, validation messages one line
each, and the canonical hashing of what a playbook asks for.

A leaf of the playbook side: loading (`load`) and expansion (`expand`) both build on it
without importing each other in a circle.
"""

from __future__ import annotations

import hashlib
import json
import reprlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.playbook.limits import MAX_ERROR_LINES, MAX_STRING_CHARS
from results_db.vocabulary import TELEMETRY_SOURCES


class PlaybookError(Exception):
    """Invalid playbook or override. ``lines`` are the individual, complete messages."""

    def __init__(self, lines: list[str]) -> None:
        if len(lines) > MAX_ERROR_LINES:  # thousands of bad items: the first ones say enough
            more = len(lines) - MAX_ERROR_LINES
            lines = [*lines[:MAX_ERROR_LINES], f"... and {more:,} more problem(s)"]
        super().__init__("\n".join(lines))
        self.lines = lines


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Telemetry(_Strict):
    interval_s: float = Field(0.1, gt=0, le=60, description="sampling interval, seconds")
    sources: list[str] = Field(default_factory=lambda: ["host", "nvml", "rapl"])
    idle_baseline_s: float = Field(
        0.0,
        ge=0,
        le=600,
        description="idle power measured on each node before the campaign "
        "(from `defaults` only); 0 turns it off",
    )

    @field_validator("sources")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = [s for s in v if s not in TELEMETRY_SOURCES]
        if unknown:
            known = list(TELEMETRY_SOURCES)
            raise ValueError(f"unknown source(s) {unknown}; expected any of {known}")
        return v


class Settings(_Strict):
    """How each trial is measured. Stopping needs both minimums; a maximum always wins."""

    warmup_iterations: int = Field(3, ge=0)
    min_repetitions: int = Field(10, ge=1)
    max_repetitions: int = Field(10_000, ge=1)
    min_duration_s: float = Field(1.0, ge=0)
    max_duration_s: float = Field(60.0, gt=0)
    timeout_s: float = Field(600.0, gt=0, description="whole trial, setup to teardown")
    target_ci: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="adaptive repetitions: past the minimums, go on until the median's 95% CI "
        "half-width is within this fraction of the median (0.02: 2%), bounded by the "
        "maximums; a trial that does not get there is flagged noisy",
    )
    contended_cores: float = Field(
        0.25,
        ge=0,
        description="CPU other processes may use during a trial's window (cores, on "
        "average) before it is flagged contended; raise it where nodes share a host",
    )
    rounds: int = Field(
        1,
        ge=1,
        le=20,
        description="measure each trial in this many rounds, each a fresh set-up, warm-up and "
        "measure loop, the rounds of every trial interleaved across the campaign: the figure "
        "is the median of the round medians, its CI over the rounds (ladder steps: 1)",
    )
    flush_l2: bool = Field(False, description="zero a 256 MB buffer before each CUDA iteration")
    cuda_graph: bool = Field(False, description="time CUDA-graph replays of one iteration")
    telemetry: Telemetry = Field(default_factory=Telemetry)

    @model_validator(mode="after")
    def _ordered(self) -> Settings:
        if self.min_repetitions > self.max_repetitions:
            raise ValueError(
                f"min_repetitions ({self.min_repetitions}) exceeds "
                f"max_repetitions ({self.max_repetitions})"
            )
        if self.min_duration_s > self.max_duration_s:
            raise ValueError(
                f"min_duration_s ({self.min_duration_s}) exceeds "
                f"max_duration_s ({self.max_duration_s})"
            )
        return self


class Target(_Strict):
    """A node selector; every given criterion must hold. Strings may be globs."""

    hostname: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    resources: dict[str, float] = Field(default_factory=dict, description="at least this much")
    fingerprint: dict[str, str | int | float | bool] = Field(default_factory=dict)


class CampaignInfo(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str = Field("", max_length=MAX_STRING_CHARS)
    calibrate: bool = Field(
        False, description="store the best results as each hardware class's measured ceilings"
    )


class ClusterInfo(_Strict):
    address: str | None = None


# A parameter's value; a mapping (explicit model dimensions, an SLO) is one value, and a list
# of values is a sweep.
ParamValue = str | int | float | bool | None | dict[str, Any]


class RankLayout(_Strict):
    """Ranks of a multi-rank trial: ``nodes`` distinct nodes with ``per_node`` ranks each."""

    nodes: int = Field(ge=1)
    per_node: int = Field(1, ge=1)

    @property
    def world_size(self) -> int:
        return self.nodes * self.per_node


class Expectation(_Strict):
    """What a metric's median must be (ReFrame-style references, for what the history cannot
    yet say): an absolute range, or at least a fraction of the node's measured ceiling or of
    its datasheet peak."""

    min: float | None = None
    max: float | None = None
    of_ceiling: float | None = Field(
        None, gt=0, le=2, description="at least this fraction of the measured ceiling"
    )
    of_peak: float | None = Field(
        None, gt=0, le=2, description="at least this fraction of the datasheet peak"
    )

    @model_validator(mode="after")
    def _something(self) -> Expectation:
        if all(v is None for v in (self.min, self.max, self.of_ceiling, self.of_peak)):
            raise ValueError("give min, max, of_ceiling or of_peak")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) exceeds max ({self.max})")
        return self


class Ladder(_Strict):
    """A load ladder: the benchmark's ``over`` sweep climbed one step at a time, lowest
    first, stopping by itself once the primary metric stops growing, errors pass a share of
    requests, or a latency passes its limit; the steps above are stored as not run."""

    over: str = Field(description="the swept param to climb (concurrency, rate, batch, ...)")
    min_gain: float = Field(
        0.05, ge=0, le=10, description="stop when a step beats the best so far by less"
    )
    max_error_rate: float = Field(
        0.05, ge=0, le=1, description="stop when more than this share of requests failed"
    )
    max_p99: dict[str, float] = Field(
        default_factory=dict,
        description="stop when a metric's p99 passes its limit (in its unit), e.g. ttft: 2000",
    )


class Benchmark(_Strict):
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
    workload: str
    on: str = "any"
    server_on: str | None = Field(
        None,
        description="target of the node(s) hosting the endpoint a load runs against: held whole "
        "and watched (power, utilisation) in the trial's window; energy is theirs",
    )
    each: bool | Literal["gpu", "gpu_pair"] = Field(
        False,
        description="true: every matching node (every group of `ranks` nodes); gpu: every GPU "
        "of every matching node; gpu_pair: every ordered pair of GPUs on each matching node",
    )
    optional: bool = Field(False, description="skip with a warning when `on` matches no node")
    ranks: int | RankLayout | None = Field(
        None, description="multi-rank trial: N ranks on N nodes, or {nodes: N, per_node: R}"
    )

    @field_validator("ranks")
    @classmethod
    def _layout(cls, v: int | RankLayout | None) -> RankLayout | None:
        if isinstance(v, int):
            if v < 1:
                raise ValueError("ranks must be at least 1")
            return RankLayout(nodes=v, per_node=1)
        return v

    params: dict[str, ParamValue | list[ParamValue]] = Field(default_factory=dict)
    zip: list[list[str]] = Field(default_factory=list)
    exclude: list[dict[str, ParamValue]] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)
    ladder: Ladder | None = Field(
        None, description="climb the `over` sweep one step at a time until it saturates"
    )
    expect: dict[str, Expectation] = Field(
        default_factory=dict,
        description="per metric: what its median must be (checked after `run` and by `check`)",
    )


MAX_PRICE_PER_HOUR = 1e6


class Prices(_Strict):
    """What hardware costs an hour, for cost per million tokens: keys are a hardware class,
    or a glob on a node's GPU model or CPU model (the first that matches prices the node)."""

    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    per_hour: dict[str, float] = Field(min_length=1)

    @field_validator("per_hour")
    @classmethod
    def _positive(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k, price in v.items() if price <= 0]
        if bad:
            raise ValueError(f"prices must be above 0: {', '.join(bad)}")
        # No hardware costs this much an hour; a figure past it is a typo, and would make
        # cost per million tokens overflow to infinity.
        dear = [k for k, price in v.items() if not price <= MAX_PRICE_PER_HOUR]
        if dear:
            raise ValueError(
                f"prices must be at most {MAX_PRICE_PER_HOUR:,.0f} an hour: {', '.join(dear)}"
            )
        return v


class Playbook(_Strict):
    campaign: CampaignInfo
    cluster: ClusterInfo = Field(default_factory=ClusterInfo)
    defaults: Settings = Field(default_factory=Settings)
    targets: dict[str, Target] = Field(default_factory=dict)
    benchmarks: list[Benchmark] = Field(min_length=1)
    prices: Prices | None = Field(
        None, description="currency per hour per hardware: cost per million output tokens"
    )

    @field_validator("targets")
    @classmethod
    def _reserved(cls, v: dict[str, Target]) -> dict[str, Target]:
        if "any" in v:
            raise ValueError("'any' is built in (every node) and cannot be redefined")
        return v


def format_loc(loc: tuple[Any, ...]) -> str:
    """('benchmarks', 0, 'params', 'op') -> 'benchmarks[0].params.op'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlist = _REPR.maxdict = _REPR.maxtuple = _REPR.maxset = 4
_REPR.maxlevel = 3


def _short(value: Any, limit: int = 60) -> str:
    """A bounded repr: built from bounded pieces, so a huge value costs no more than a small
    one (a full repr of an expanded alias bomb took minutes)."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validation_lines(source: str, exc: ValidationError, prefix: tuple[Any, ...] = ()) -> list[str]:
    """One line per pydantic error: file, field path, what was expected, what was given."""
    lines = []
    for err in exc.errors():
        loc = prefix + tuple(p for p in err["loc"] if p not in ("function-after",))
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        if err["type"] == "missing":
            lines.append(f"{source}: {format_loc(loc)}: required field is missing")
        elif err["type"] == "extra_forbidden":
            lines.append(f"{source}: {format_loc(loc)}: unknown field")
        else:
            lines.append(f"{source}: {format_loc(loc)}: {msg} (got {_short(got)})")
    return list(dict.fromkeys(lines))


def effective_settings(defaults: Settings, override: dict[str, Any]) -> Settings:
    """A benchmark's settings: its overrides merged onto the playbook defaults."""
    merged = defaults.model_dump()
    for k, v in override.items():
        if k == "telemetry" and isinstance(v, dict):
            merged["telemetry"] = {**merged["telemetry"], **v}
        else:
            merged[k] = v
    return Settings.model_validate(merged)


def canonical_json(value: Any) -> str:
    """Deterministic JSON for hashing (sorted keys, no whitespace)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def short_hash(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:16]
