"""``inference.serving``: load against an OpenAI-compatible streaming endpoint.

One measured iteration is one load run (warm-up requests first, not counted): requests
arrive at a fixed concurrency (closed loop), or at a rate with gamma gaps (burstiness 1 is
Poisson) or constant ones (``arrival: constant``), optionally capped in flight, until both
``duration_s`` has passed and ``min_requests`` were sent. Definitions follow vLLM's serving
benchmark (DESIGN.md rule 10):

- ``ttft``, ``e2e_latency``, ``tpot`` are one sample per successful request; ``itl`` pools
  the gaps between streamed chunks of every request; their p50/p90/p95/p99 are stored.
- ``request_throughput``, ``output_throughput``, ``total_throughput`` divide completed
  requests / output tokens / all tokens by the run's duration (first send -> last answer).
- ``goodput``: completed requests meeting every SLO given (TTFT, TPOT, E2E) per second.
- ``errors``: failed requests, by kind in the trial's context.

Scenarios, as MLPerf Inference names them: ``single_stream`` (one request at a time),
``offline`` (everything at once), ``server`` (Poisson at ``rate``). The API key is read from
the environment variable the playbook names, on the node that sends; it is never stored.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import statistics
import zlib
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import aiohttp
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from workloads.base import (
    MetricSpec,
    Params,
    UnsupportedParams,
    VerificationError,
    Work,
    Workload,
)
from workloads.errors import first_line
from workloads.lazy import lazy_module
from workloads.serving.client import (
    Endpoint,
    LengthDist,
    LoadRun,
    RequestPlan,
    SharedPrefix,
    api_base,
    first_model,
    merge_runs,
    plan_stream,
    rank_starts,
)
from workloads.serving.limits import MAX_TOKENS_ENV, check_tokens
from workloads.serving.server_metrics import origin, server_root
from workloads.serving.tokens import TokenCounter

# Bound now, imported on first use; its submodules are reached as attributes (torch.distributed):
# an `import torch.distributed` statement beside a lazily bound torch runs c10d's set-up twice.
torch = lazy_module("torch")

SCENARIOS = ("custom", "single_stream", "offline", "server")
PREFLIGHT_TIMEOUT_S = 5.0


class Lengths(BaseModel):
    """A token-length distribution; a plain number means exactly that many."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    mean: int = Field(ge=1)
    dist: Literal["fixed", "uniform", "normal"] = "fixed"
    spread: float = Field(0.0, ge=0, le=1, description="uniform: +-spread x mean; normal: std")

    @model_validator(mode="after")
    def _capped(self) -> Lengths:
        # A normal draw is not bounded: the cap holds for mean + 4 std.
        reach = self.spread * (4 if self.dist == "normal" else 1) if self.dist != "fixed" else 0
        check_tokens(math.ceil(self.mean * (1 + reach)), "a length")
        return self

    def dist_spec(self) -> LengthDist:
        return LengthDist(self.mean, self.dist, self.spread)


class Slo(BaseModel):
    """Service-level objectives a request must meet to count towards goodput (ms)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    ttft_ms: float | None = Field(None, gt=0)
    tpot_ms: float | None = Field(None, gt=0)
    e2e_ms: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _some_limit(self) -> Slo:
        if self.ttft_ms is None and self.tpot_ms is None and self.e2e_ms is None:
            raise ValueError("an SLO needs at least one limit: ttft_ms, tpot_ms or e2e_ms")
        return self


class SloSearch(BaseModel):
    """Find the highest request rate whose SLO attainment (the share of sent requests that
    completed within every limit of ``slo``) is at least ``attainment``: probe ``low`` and
    ``high``, then bisect (geometric midpoints) until high/low is within ``tolerance`` or
    ``max_probes`` load runs were made."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    attainment: float = Field(0.99, gt=0, le=1)
    # Rates a client can send and a probe can measure: 1 request in 1,000 s up to 100,000/s.
    low: float = Field(ge=1e-3, le=1e5, description="req/s: a rate expected to meet the SLO")
    high: float = Field(ge=1e-3, le=1e5, description="req/s: a rate expected to miss it")
    tolerance: float = Field(0.05, gt=0, le=1, description="stop when high/low - 1 is below")
    max_probes: int = Field(10, ge=2, le=50)

    @model_validator(mode="after")
    def _ordered(self) -> SloSearch:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        return self


class Trace(BaseModel):
    """A JSON Lines trace to replay (workloads/serving_trace.py): its path on the node that
    sends (validation reads it where `harness` runs), its time unit, a speed-up (2: twice
    as fast) and an optional cap on how many of its requests to send."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    path: str = Field(min_length=1)
    time_unit: Literal["s", "ms"] = "s"
    speedup: float = Field(1.0, gt=0)
    limit: int | None = Field(None, ge=1)

    def requests(self) -> list[Any]:
        from workloads.serving.trace import load_trace

        return load_trace(
            self.path, time_unit=self.time_unit, speedup=self.speedup, limit=self.limit
        )


class DatasetSpec(BaseModel):
    """A conversation dataset to send (workloads/serving/dataset.py): its path on the node
    that sends (validation reads it where `harness` runs), its layout, and an optional cap on
    how many of its usable prompts to take."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    path: str = Field(min_length=1)
    format: Literal["sharegpt"] = "sharegpt"
    limit: int | None = Field(None, ge=1)

    def load(self, counter: Any) -> Any:
        from workloads.serving.dataset import load_sharegpt

        return load_sharegpt(self.path, counter, self.limit)


class Prefix(BaseModel):
    """A shared prompt prefix of ``tokens`` words on a ``share`` of requests (prefix-cache
    reuse); without it every prompt is random from its first word (no cache hit)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    tokens: int = Field(ge=1)
    share: float = Field(1.0, ge=0, le=1)

    @field_validator("tokens")
    @classmethod
    def _capped(cls, value: int) -> int:
        return check_tokens(value, "a prefix")


class ServingParams(Params):
    added_later = (
        "trace",
        "prefix",
        "slo_search",
        "server_metrics",
        "tokenizer",
        "arrival",
        "dataset",
    )
    url: str | None = Field(
        None,
        description="base URL (http://host:port or .../v1); default $OPENAI_BASE_URL",
    )
    api: Literal["completions", "chat"] = "completions"
    model: str | None = Field(None, description="model name to request; default: the first listed")
    api_key_env: str = Field(
        "OPENAI_API_KEY",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="environment variable holding the API key (the key is never stored)",
    )
    scenario: Literal[SCENARIOS] = "custom"  # type: ignore[valid-type]
    concurrency: int | None = Field(None, ge=1, description="requests in flight at most")
    rate: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="requests/s (see arrival)"
    )
    burstiness: float = Field(1.0, gt=0, description="gamma shape: 1 Poisson, <1 burstier")
    arrival: Literal["gamma", "constant"] = Field(
        "gamma", description="gaps at a rate: gamma (burstiness) or constant (exactly 1/rate)"
    )
    prompt_len: Lengths = Field(default_factory=lambda: Lengths(mean=128))
    output_len: Lengths = Field(default_factory=lambda: Lengths(mean=64))
    duration_s: float = Field(0.0, ge=0, description="send for at least this long")
    min_requests: int = Field(32, ge=1, description="and send at least this many")
    max_duration_s: float = Field(600.0, gt=0, description="cancel what still runs after this")
    warmup_requests: int = Field(2, ge=0, description="sent first, not counted")
    request_timeout_s: float = Field(300.0, gt=0)
    slo: Slo | None = Field(None, description="goodput objectives: ttft_ms, tpot_ms, e2e_ms")
    trace: Trace | None = Field(
        None, description="replay a JSONL trace: {path, time_unit: s|ms, speedup, limit}"
    )
    prefix: Prefix | None = Field(
        None, description="shared prompt prefix: {tokens, share}; default: none (no cache hits)"
    )
    dataset: DatasetSpec | None = Field(
        None,
        description="send a conversation dataset's prompts and answer lengths: {path, format: "
        "sharegpt, limit}; needs tokenizer",
    )
    tokenizer: str | None = Field(
        None,
        description="a local Hugging Face tokenizer folder: prompts of exact token lengths, and "
        "input/output counted with it (never downloaded); default: the server's usage",
    )
    server_metrics: bool = Field(
        True, description="scrape the endpoint's /metrics (vLLM, SGLang, TGI) during the load"
    )
    slo_search: SloSearch | None = Field(
        None, description="find the highest rate meeting the SLO: {attainment, low, high}"
    )
    ignore_eos: bool = Field(True, description="ask for exactly output_len tokens (vLLM)")
    extra_body: dict[str, Any] = Field(default_factory=dict, description="merged into requests")
    seed: int = Field(0, ge=0, description="prompts, lengths and arrival gaps follow it")

    @field_validator("prompt_len", "output_len", mode="before")
    @classmethod
    def _plain_number(cls, value: Any) -> Any:
        return {"mean": value} if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _scenario(self) -> ServingParams:
        s = self.scenario
        given = self.model_fields_set
        if s == "single_stream" and (self.rate is not None or self.concurrency not in (None, 1)):
            raise ValueError("scenario single_stream sends one request at a time: no rate")
        if s == "offline" and self.rate is not None:
            raise ValueError("scenario offline sends everything at once: no rate")
        if s == "server" and self.rate is None:
            raise ValueError("scenario server needs a rate (requests/s)")
        if self.trace is not None:
            if s != "custom" or self.rate is not None or self.slo_search is not None:
                raise ValueError("a trace sets the arrival times: no rate, scenario or slo_search")
            clash = self._set_apart_from_default(
                "prompt_len", "output_len", "duration_s", "min_requests"
            )
            if clash:
                raise ValueError(f"a trace sets {', '.join(clash)} itself: remove it")
        if self.dataset is not None:
            if self.tokenizer is None:
                raise ValueError(
                    "a dataset's lengths are counted in the model's tokenizer: give tokenizer"
                )
            if self.trace is not None or self.prefix is not None:
                raise ValueError("a dataset's prompts are its own: no trace or prefix with it")
            clash = self._set_apart_from_default("prompt_len", "output_len")
            if clash:
                raise ValueError(f"a dataset sets {', '.join(clash)} itself: remove it")
        quiet = self.concurrency is None and self.rate is None
        if s == "custom" and quiet and self.slo_search is None and self.trace is None:
            raise ValueError("give concurrency, rate or both (or a scenario)")
        if self.slo_search is not None:
            if self.slo is None:
                raise ValueError("slo_search needs slo: the limits a request must meet")
            if s in ("single_stream", "offline") or self.rate is not None:
                raise ValueError("slo_search sets the rate itself: no rate, scenario custom")
        if "duration_s" in given and self.duration_s > self.max_duration_s:
            raise ValueError("duration_s exceeds max_duration_s")
        return self

    def _set_apart_from_default(self, *fields: str) -> list[str]:
        """Those of ``fields`` given and not at their default: `harness run` validates the
        stored params again with every default filled in, so "given" alone would refuse
        every trace or dataset there."""
        return sorted(
            f
            for f in fields
            if f in self.model_fields_set
            and getattr(self, f)
            != type(self).model_fields[f].get_default(call_default_factory=True)
        )

    def arrivals(self) -> tuple[int | None, float | None]:
        """(concurrency cap, rate) the scenario implies."""
        if self.scenario == "single_stream":
            return 1, None
        if self.scenario == "offline":
            return self.concurrency, math.inf
        return self.concurrency, self.rate


TTFT = MetricSpec("ttft", "ms", False, "request sent -> first streamed token")
TPOT = MetricSpec("tpot", "ms", False, "(E2E - TTFT) / (output tokens - 1), per request")
ITL = MetricSpec("itl", "ms", False, "gaps between streamed chunks, all requests pooled")
E2E = MetricSpec("e2e_latency", "ms", False, "request sent -> end of stream")
REQ_TPUT = MetricSpec("request_throughput", "req/s", True, "completed requests per second")
OUT_TPUT = MetricSpec("output_throughput", "tokens/s", True, "output tokens per second")
TOTAL_TPUT = MetricSpec("total_throughput", "tokens/s", True, "input + output tokens per second")
GOODPUT = MetricSpec("goodput", "req/s", True, "completed requests meeting every SLO per second")
ERRORS = MetricSpec("errors", "requests", False, "failed requests (kinds in the context)")
SLO_RATE = MetricSpec(
    "slo_rate", "req/s", True, "highest request rate meeting the SLO at the stated attainment"
)
CLIENT_LAG = MetricSpec("client_lag", "ms", False, "client event-loop lag (its own delay)")


class ServingWorkload(Workload):
    name = "inference.serving"
    description = "load against an OpenAI-compatible streaming endpoint: TTFT, TPOT, ITL, goodput"
    Params = ServingParams
    network = True
    metrics = (
        OUT_TPUT,
        TTFT,
        TPOT,
        ITL,
        E2E,
        REQ_TPUT,
        TOTAL_TPUT,
        GOODPUT,
        ERRORS,
        CLIENT_LAG,
        SLO_RATE,
    )
    primary_metric = "output_throughput"
    # `ranks: N` spreads the load over N client processes (on N nodes, or per_node on each):
    # each sends its share, rank 0 merges every request into the one trial.
    multi_rank = True
    ranks_optional = True
    detail_metrics = ("ttft", "tpot", "itl", "e2e_latency")
    sweep_params = ("concurrency", "rate")  # a load sweep: throughput and latency against load
    # One iteration is a whole load run with its own warm-up requests.
    default_settings = {
        "warmup_iterations": 0,
        "min_repetitions": 1,
        "max_repetitions": 1,
        "min_duration_s": 0.0,
    }

    params: ServingParams

    @classmethod
    def primary_for(cls, params: dict[str, Any]) -> str:
        return "slo_rate" if params.get("slo_search") else cls.primary_metric

    @classmethod
    def shared_resources(cls, params: dict[str, Any]) -> tuple[str, ...]:
        """The endpoint: two load runs against one server at once would measure each other."""
        url = params.get("url") or os.environ.get("OPENAI_BASE_URL") or "$OPENAI_BASE_URL"
        return (f"endpoint {server_root(str(url))}",)

    @classmethod
    def forwarded_env(cls, params: dict[str, Any]) -> tuple[str, ...]:
        key = str(params.get("api_key_env") or "OPENAI_API_KEY")
        return (key, "OPENAI_BASE_URL", MAX_TOKENS_ENV)

    @classmethod
    def sent_secrets(cls, params: dict[str, Any]) -> tuple[tuple[str, str], ...]:
        """The API key's variable and the endpoint's origin it goes to as a bearer token."""
        url = params.get("url") or os.environ.get("OPENAI_BASE_URL") or "$OPENAI_BASE_URL"
        return ((str(params.get("api_key_env") or "OPENAI_API_KEY"), origin(str(url))),)

    def setup(self) -> None:
        self._join_ranks()  # first: torch.distributed is set up before any HTTP client
        p = self.params
        url = p.url or os.environ.get("OPENAI_BASE_URL")
        if not url:
            raise UnsupportedParams("no endpoint: give params.url or set $OPENAI_BASE_URL")
        self.url = url
        self.key = os.environ.get(p.api_key_env) or None
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        try:
            model = p.model or asyncio.run(first_model(url, headers))
        except TimeoutError:
            raise UnsupportedParams(f"endpoint {url}: no answer to GET /v1/models") from None
        except Exception as exc:  # unreachable, refused, not OpenAI-compatible
            why = str(exc).strip() or type(exc).__name__
            raise UnsupportedParams(self._redact(f"endpoint {url}: {why}")) from None
        self.endpoint = Endpoint(
            url=url,
            api=p.api,
            model=model,
            headers=headers,
            ignore_eos=p.ignore_eos,
            extra_body=dict(p.extra_body),
            timeout_s=p.request_timeout_s,
            keep_text=p.tokenizer is not None,
        )
        self.runs: list[LoadRun] = []
        self.slo_rates: list[float] = []  # slo_search: each iteration's answer
        self.search_context: dict[str, Any] | None = None  # ... and its last search's probes
        self.counter = TokenCounter.load(p.tokenizer) if p.tokenizer else None
        self.trace_requests = p.trace.requests() if p.trace else []
        self.dataset = p.dataset.load(self.counter) if p.dataset else None  # with tokenizer

    def _join_ranks(self) -> None:
        """Which share of the load this process sends; with several ranks, the process group
        (gloo) that starts them together and gathers their requests to rank 0."""
        p = self.params
        self.rank, self.world = (self.ranks.rank, self.ranks.world_size) if self.ranks else (0, 1)
        self.seed = p.seed + 7919 * self.rank  # different prompts and gaps per rank
        self.min_requests = -(-p.min_requests // self.world)
        self.rank_counts: list[int] = []
        self.start_spreads: list[float] = []  # ms between the ranks' first sends, per run
        if self.world == 1:
            return
        if p.slo_search is not None:
            raise UnsupportedParams("slo_search probes from one client: remove ranks")
        if p.concurrency is not None and p.concurrency < self.world:
            raise UnsupportedParams(
                f"concurrency {p.concurrency} over {self.world} ranks: give each a stream"
            )
        from workloads.rendezvous import join

        assert self.ranks is not None
        self.joined = join(self.ranks, "gloo")

    def _share(
        self, concurrency: int | None, rate: float | None
    ) -> tuple[int | None, float | None]:
        """This rank's part of the load: streams split as evenly as they go, the rate by N."""
        n, r = self.world, self.rank
        if concurrency is not None:
            concurrency = concurrency // n + (1 if r < concurrency % n else 0)
        if rate is not None:
            rate = rate / n
        return concurrency, rate

    def _gather(self, run: LoadRun) -> LoadRun:
        """Every rank's run to rank 0, merged there; the other ranks keep their own."""
        runs: list[Any] | None = [None] * self.world if self.rank == 0 else None
        torch.distributed.gather_object(run, runs, dst=0)
        if runs is None:
            return run
        self.rank_counts = [len(x.results) for x in runs]
        # How far apart the ranks' first measured sends were (the merged span counts it as
        # load time), on the same clock the merge uses.
        begins, _ = rank_starts(runs)
        starts = [b for b, x in zip(begins, runs, strict=True) if x.results]
        self.start_spreads.append((max(starts) - min(starts)) * 1e3 if starts else 0.0)
        return merge_runs(runs)

    def agree(self, stop: bool, batch: int) -> tuple[bool, int]:
        if self.world == 1:
            return stop, batch
        decision = torch.tensor([float(stop), float(batch)], dtype=torch.float64)
        torch.distributed.broadcast(decision, src=0)
        return bool(decision[0].item()), int(decision[1].item())

    def metric_specs(self) -> tuple[MetricSpec, ...]:
        left_out = set()
        if self.params.slo is None:
            left_out.add("goodput")
        if self.params.slo_search is None:
            left_out.add("slo_rate")
        return tuple(m for m in self.metrics if m.name not in left_out)

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> list[str]:
        """A trace is read, and a tokenizer folder loaded, before anything runs: missing,
        malformed or empty is one line naming the file."""
        problems: list[str] = []
        trace = params.get("trace")
        if trace:
            problems += _trace_problems(Trace.model_validate(trace), _file_stamp(trace["path"]))
        folder = params.get("tokenizer")
        if folder:
            problems += _tokenizer_problems(str(folder), _folder_stamp(str(folder)))
        dataset = params.get("dataset")
        if dataset and folder and not problems:
            spec = DatasetSpec.model_validate(dataset)
            stamps = (_file_stamp(spec.path), _folder_stamp(str(folder)))
            problems += _dataset_problems(spec, str(folder), stamps)
        return problems

    @classmethod
    def preflight(cls, params: dict[str, Any]) -> list[str]:
        """The endpoint must answer (any HTTP status: a refused key is the trial's to say)."""
        url = params.get("url") or os.environ.get("OPENAI_BASE_URL")
        if not url:
            return ["no endpoint: give params.url or set $OPENAI_BASE_URL"]
        return _unreachable(str(url))

    def run_iteration(self) -> None:
        if self.params.trace is not None:
            run = self._replay(self.params.trace)
        elif self.params.slo_search is not None:
            self._search(self.params.slo_search)
            return
        else:
            concurrency, rate = self._share(*self.params.arrivals())
            run = self._load(rate, concurrency)
        self.runs.append(self._gather(run) if self.world > 1 else run)

    def _load(self, rate: float | None, concurrency: int | None) -> LoadRun:
        """One load run at ``rate`` (None: as fast as ``concurrency`` allows)."""
        p = self.params
        plans = plan_stream(
            self.seed,
            p.prompt_len.dist_spec(),
            p.output_len.dist_spec(),
            rate,
            p.burstiness,
            self._prefix(),
            constant=p.arrival == "constant",
            dataset=self.dataset.requests if self.dataset else None,
        )
        return self._send(self._fitted(plans), concurrency, p.duration_s, self.min_requests)

    def _replay(self, trace: Trace) -> LoadRun:
        """Every request of the trace at its (scaled) time; a session's turns in order."""
        from workloads.serving.client import plan_trace

        p = self.params
        mine = [  # this rank's requests; a conversation's turns stay on one rank
            r
            for i, r in enumerate(self.trace_requests)
            if (zlib.crc32(r.session.encode()) if r.session else i) % self.world == self.rank
        ]
        plans = list(self._fitted(plan_trace(mine, p.seed, self._prefix())))
        return self._send(plans, p.concurrency, 0.0, len(plans))

    def _send(
        self,
        plans: Iterable[RequestPlan],
        concurrency: int | None,
        duration_s: float,
        min_requests: int,
    ) -> LoadRun:
        """Warm up (not counted), then send ``plans``; the endpoint's /metrics read meanwhile."""
        from workloads.serving.client import run_async, run_load

        p = self.params
        warm = plan_stream(p.seed + 1, p.prompt_len.dist_spec(), p.output_len.dist_spec(), None)
        warmup = [next(warm) for _ in range(p.warmup_requests)]
        return run_async(
            run_load(
                self.endpoint,
                plans,
                warmup,
                concurrency,
                duration_s,
                min_requests,
                p.max_duration_s,
                self._scrape_url(),
                torch.distributed.barrier if self.world > 1 else None,  # shares start at once
            )
        )

    def _scrape_url(self) -> str | None:
        from workloads.serving.server_metrics import metrics_url

        return metrics_url(self.url) if self.params.server_metrics and self.rank == 0 else None

    def _fitted(self, plans: Iterable[RequestPlan]) -> Iterator[RequestPlan]:
        """Prompts cut to exactly their length in the tokenizer's tokens, when one is given
        (lazily: the stream has no end)."""
        for plan in plans:
            if self.counter is not None and self.dataset is None:  # a dataset's: as written
                plan.prompt = self.counter.fit(plan.prompt, plan.prompt_len)
            yield plan

    def _prefix(self) -> SharedPrefix | None:
        p = self.params.prefix
        return SharedPrefix(p.tokens, p.share) if p else None

    def _attainment(self, run: LoadRun) -> float:
        """The share of sent requests (failed ones too) that met every SLO limit."""
        sent = len(run.results) + run.cancelled
        return sum(r.ok and self._meets_slo(r) for r in run.results) / sent if sent else 0.0

    def _search(self, search: SloSearch) -> None:
        """Bisect the rate between ``low`` (meets) and ``high`` (misses); the run kept is the
        one at the highest rate that met the SLO, and every probe goes into the context."""
        probes: list[dict[str, float]] = []

        def probe(rate: float) -> tuple[LoadRun, bool]:
            run = self._load(rate, self.params.concurrency)
            share = self._attainment(run)
            sent = len(run.results) + run.cancelled
            probes.append({"rate": rate, "attainment": share, "sent": sent})
            # A probe cut short (max_duration_s) measured too few requests to say it met
            # the SLO: it counts as a miss.
            if sent < self.min_requests:
                probes[-1]["short"] = True
                return run, False
            return run, share >= search.attainment

        low, high = search.low, search.high
        best, met = probe(low)
        if not met:
            raise VerificationError(
                f"slo_search: low={low:g} req/s already misses the SLO (attainment "
                f"{probes[-1]['attainment']:.1%} < {search.attainment:.1%}); lower it"
            )
        run, met = probe(high)
        note = "within tolerance"
        if met:
            best, low, note = run, high, "high met the SLO too: the answer is at least high"
        while not met and len(probes) < search.max_probes and high / low - 1 > search.tolerance:
            mid = math.sqrt(low * high)
            run, ok = probe(mid)
            if ok:
                best, low = run, mid
            else:
                high = mid
        if not met and high / low - 1 > search.tolerance:
            note = f"max_probes reached with high/low = {high / low:.3f}"
        self.runs.append(best)
        self.slo_rates.append(low)
        self.search_context = {"probes": probes, "low": low, "high": high, "stop": note}

    def verify(self) -> None:
        # Each request's stream is checked as it is read (status, [DONE], text); here: did
        # the run measure what was asked?
        p = self.params
        wanted = len(self.trace_requests) if p.trace else p.min_requests
        if self.rank != 0:  # its own share; rank 0 holds everyone's requests
            wanted = 0 if p.trace else self.min_requests
        for run in self.runs:
            sent = len(run.results) + run.cancelled
            if sent < wanted:
                what = "the trace's requests" if p.trace else "min_requests"
                why = f" ({run.stop})" if run.stop.startswith("warm-up") else ""
                raise VerificationError(
                    f"only {sent} of {what} {wanted} sent within max_duration_s{why}"
                )
            if not any(r.ok for r in run.results):
                kinds = _error_kinds(run)
                first = next((r.detail for r in run.results if r.detail), "")
                raise VerificationError(
                    self._redact(f"every request failed: {kinds}; first: {first}")
                )

    def derive(self, seconds: list[float]) -> dict[str, list[float]]:
        # Runs of the harness's warm-up iterations (if a playbook asks for any) come first.
        self.runs = runs = self.runs[-len(seconds) :] if seconds else []
        if self.counter is not None:  # after the runs: counting never delays a request
            for run in runs:
                self.counter.recount(run.results)
        ok = [r for run in runs for r in run.results if r.ok]
        out: dict[str, list[float]] = {
            "ttft": [r.ttft * 1e3 for r in ok if r.ttft is not None],
            "tpot": [t * 1e3 for r in ok if (t := r.tpot) is not None],
            "itl": [g * 1e3 for r in ok for g in r.itl],
            "e2e_latency": [r.e2e * 1e3 for r in ok if r.e2e is not None],
            "request_throughput": [],
            "output_throughput": [],
            "total_throughput": [],
            "errors": [],
            "client_lag": [lag * 1e3 for run in runs for lag in run.loop_lag_s],
        }
        if self.params.slo is not None:
            out["goodput"] = []
        if self.params.slo_search is not None:
            out["slo_rate"] = self.slo_rates[-len(runs) :] if runs else []
        for run in runs:
            done = [r for r in run.results if r.ok]
            d = run.duration_s
            out_tokens = sum(r.output_tokens for r in done)
            in_tokens = sum(r.input_tokens or r.prompt_len for r in done)
            out["request_throughput"].append(len(done) / d)
            out["output_throughput"].append(out_tokens / d)
            out["total_throughput"].append((in_tokens + out_tokens) / d)
            out["errors"].append(float(sum(not r.ok for r in run.results)))
            if self.params.slo is not None:
                out["goodput"].append(sum(self._meets_slo(r) for r in done) / d)
        self.derived = out
        return out

    def _meets_slo(self, r: Any) -> bool:
        slo = self.params.slo
        assert slo is not None
        checks = (
            (slo.ttft_ms, r.ttft),
            (slo.tpot_ms, r.tpot if r.output_tokens > 1 else 0.0),
            (slo.e2e_ms, r.e2e),
        )
        return all(limit is None or (v is not None and v * 1e3 <= limit) for limit, v in checks)

    def work(self) -> Work:
        # Energy per token divides by output tokens; a run's tokens vary a little with its
        # length, so the mean over measured runs is the work of one iteration.
        tokens = [sum(r.output_tokens for r in run.results if r.ok) for run in self.runs]
        return Work(tokens=statistics.fmean(tokens) if tokens else 0.0)

    def context(self) -> dict[str, Any]:
        runs = self.runs
        last = runs[-1] if runs else None
        delays = [ns / 1e6 for run in runs for r in run.results if r.ok for ns in r.delivery_ns]
        ctx: dict[str, Any] = {
            "endpoint": self.url,
            "served_model": self.endpoint.model,
            "api_key": "from $" + self.params.api_key_env if self.key else "none",
            "token_counts": self._count_source(),
            **getattr(self, "joined", {}),
            **(
                {
                    "client_ranks": self.world,
                    "requests_by_rank": self.rank_counts,
                    "rank_start_spread_ms": self.start_spreads[-len(runs) :] if runs else [],
                }
                if self.world > 1
                else {}
            ),
            **self._mean_lengths(),
            "requests": sum(len(run.results) for run in runs),
            "completed": sum(r.ok for run in runs for r in run.results),
            "cancelled": sum(run.cancelled for run in runs),
            "errors_by_kind": _error_kinds(*runs),
            "stop": last.stop if last else None,
            "duration_s": [run.duration_s for run in runs],
            **({"slo_search": self.search_context} if self.search_context else {}),
            **(self._trace_context() if self.params.trace else {}),
            **(self._dataset_context() if self.dataset else {}),
            **client_check(runs),
            **server_summary(runs),
            "short_outputs": sum(
                r.ok and r.output_tokens < r.output_len for run in runs for r in run.results
            ),
        }
        if delays:
            p50 = float(np.percentile(delays, 50))
            ctx["delivery_delay_ms"] = {
                "p50": p50,
                "p99": float(np.percentile(delays, 99)),
                "mean": statistics.fmean(delays),
            }
            # The delivery delay (server write -> our timestamp: an upper bound on the
            # client's share) adds to TTFT and E2E; in ITL and TPOT, differences of two
            # timestamps, a steady delay cancels and only its jitter remains.
            ttft = self.derived["ttft"]
            if ttft:
                ctx["client_overhead_pct_of_ttft"] = 100 * p50 / float(np.percentile(ttft, 50))
        return ctx

    def _mean_lengths(self) -> dict[str, float]:
        """The tokens requests really held, on average, beside what was asked."""
        done = [r for run in self.runs for r in run.results if r.ok]
        inputs = [r.input_tokens for r in done if r.input_tokens is not None]
        out = {}
        if inputs:
            out["mean_input_tokens"] = statistics.fmean(inputs)
        if done:
            out["mean_output_tokens"] = statistics.fmean(r.output_tokens for r in done)
        return out

    def _count_source(self) -> str:
        """Where the stored token counts come from."""
        if self.counter is not None:
            return f"tokenizer {self.params.tokenizer}"
        done = [r for run in self.runs for r in run.results if r.ok]
        if done and all(r.usage_counted for r in done):
            return "server usage"
        return "stream chunks (the server reported no usage)" if done else "none"

    def telemetry(self) -> list[Any]:
        from collectors.base import Sample

        return [  # the endpoint itself is in the context; the stored device name is short
            Sample(t, "server", "endpoint", name, unit, value)
            for run in getattr(self, "runs", [])
            for t, name, unit, value in run.server.readings
        ]

    def _trace_context(self) -> dict[str, Any]:
        reqs = self.trace_requests
        return {
            "trace": {
                "requests": len(reqs),
                "sessions": len({r.session for r in reqs if r.session is not None}),
                "span_s": reqs[-1].arrival_s if reqs else 0.0,
            }
        }

    def _dataset_context(self) -> dict[str, Any]:
        d = self.dataset
        return {
            "dataset": {
                "format": self.params.dataset.format,  # type: ignore[union-attr]
                "entries": d.entries,
                "usable": len(d.requests),
                "left_out": {k: v for k, v in d.left_out.items() if v},
            }
        }

    def teardown(self) -> None:
        self.__dict__.pop("runs", None)
        if getattr(self, "world", 1) > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    def _redact(self, text: str) -> str:
        key = getattr(self, "key", None)
        return text.replace(key, "***") if key else text


# The client is the bottleneck, not the server, past these: its event loop late by more
# than 5 ms at p99, or its requests written late against their schedule by more than 3 ms
# at p99 (the server saw them 1-2 ms later still at thousands a second: 3 ms here is about
# the 5 ms late that benchmarks/serving_peers.py stops a rate at). Its CPU is reported, not
# judged: one core at 94% still held 2,400 requests/s to the schedule and the server's
# TTFT (benchmarks/README.md); lateness is what shows when it no longer keeps up.
CLIENT_LAG_LIMIT_S = 0.005
SEND_LAG_LIMIT_S = 0.003


def _file_stamp(path: str) -> tuple[int, int] | None:
    """What tells one version of a file from another (mtime, size); None when unreadable."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _trace_problems(trace: Trace, stamp: tuple[int, int] | None) -> tuple[str, ...]:
    """The trace read once per version of its file (``stamp``, the cache key), not once per
    combination of a sweep's params: it may hold a million requests."""
    from workloads.serving.trace import TraceError

    try:
        trace.requests()
    except TraceError as exc:
        return (str(exc),)
    return ()


@functools.lru_cache(maxsize=8)
def _dataset_problems(spec: DatasetSpec, folder: str, stamps: tuple) -> tuple[str, ...]:
    """The dataset read and counted once per version of it and of the tokenizer
    (``stamps``: the file's, then the folder's)."""
    from workloads.serving.dataset import DatasetError

    try:
        spec.load(_counter_here(folder, stamps[1]))
    except (DatasetError, UnsupportedParams) as exc:
        return (str(exc),)
    return ()


def _folder_stamp(folder: str) -> tuple[tuple[str, int, int], ...]:
    """Each file's name, mtime and size: a folder's version, for the cache."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
        return tuple((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in entries)
    except OSError:
        return ()


@functools.lru_cache(maxsize=8)
def _counter_here(folder: str, stamp: tuple) -> TokenCounter:
    """The tokenizer folder loaded once per version (``stamp``), where validation runs: its
    own check and a dataset's counts share it."""
    return TokenCounter.load(folder, where="here")


@functools.lru_cache(maxsize=8)
def _tokenizer_problems(folder: str, stamp: tuple) -> tuple[str, ...]:
    try:
        _counter_here(folder, stamp)
    except UnsupportedParams as exc:
        return (str(exc),)
    return ()


@functools.cache
def _unreachable_cached(url: str) -> tuple[str, ...]:
    async def probe() -> None:
        timeout = aiohttp.ClientTimeout(total=PREFLIGHT_TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(api_base(url) + "/models") as resp,
        ):
            await resp.read()

    try:
        asyncio.run(probe())
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        reason = first_line(exc)
        return (
            f"endpoint {url} does not answer from here: {reason} "
            "(--skip-preflight if only the cluster's nodes can reach it)",
        )
    return ()


def _unreachable(url: str) -> list[str]:
    """One line when nothing answers at ``url`` within PREFLIGHT_TIMEOUT_S, else none."""
    return list(_unreachable_cached(url))


def server_summary(runs: list[LoadRun]) -> dict[str, Any]:
    """What the endpoint's /metrics said over the runs: per metric its max and mean (the
    preemptions counter: how many happened during the load), and the scrape's status."""
    readings = [r for run in runs for r in run.server.readings]
    statuses = {run.server.status for run in runs} - {"not scraped"}
    if not readings:
        return {"server_metrics": {"status": "; ".join(sorted(statuses))}} if statuses else {}
    by_name: dict[str, list[float]] = {}
    for _, name, _, value in readings:
        by_name.setdefault(name, []).append(value)
    out: dict[str, Any] = {"status": "ok"}
    for name, values in sorted(by_name.items()):
        if name == "preemptions":
            out[name] = values[-1] - values[0]
        else:
            out[name] = {"max": max(values), "mean": statistics.fmean(values)}
    return {"server_metrics": out}


def client_check(runs: list[LoadRun]) -> dict[str, Any]:
    """The client's check of itself over the runs: loop lag and send lag p99 (ms), CPU, and
    ``client_bound`` with the reasons when any passes its limit (then the figures measure
    the client as much as the server). Send lag is judged past a scheduled run's first
    second (``send_lag_start_p99_ms`` reports that second): in benchmarks/serving_peers.py
    this flag was off at every rate one core sustained and on past it, bar one rate that
    failed only by its TTFT, which a client cannot see."""
    loop = [lag for run in runs for lag in run.loop_lag_s]
    late = [lag for run in runs for lag in run.send_lag_s]
    cpu = max((run.client_cpu for run in runs), default=0.0)
    out: dict[str, Any] = {"client_cpu": cpu}
    reasons = []
    for name, values, limit in (
        ("loop_lag", loop, CLIENT_LAG_LIMIT_S),
        ("send_lag", late, SEND_LAG_LIMIT_S),
    ):
        if values:
            p99 = float(np.percentile(values, 99))
            out[f"{name}_p99_ms"] = 1e3 * p99
            if p99 > limit:
                reasons.append(f"{name} p99 {1e3 * p99:.1f} ms > {1e3 * limit:g} ms")
    start = [lag for run in runs for lag in run.send_lag_start_s]
    if start:  # reported, not judged: the first second opens the connections
        out["send_lag_start_p99_ms"] = 1e3 * float(np.percentile(start, 99))
    if reasons:
        out["client_bound"] = True
        out["client_bound_reasons"] = reasons
    return out


def _error_kinds(*runs: LoadRun) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for run in runs:
        for r in run.results:
            if not r.ok and r.error:
                kinds[r.error] = kinds.get(r.error, 0) + 1
    return dict(sorted(kinds.items()))


__all__ = ["ServingWorkload"]
