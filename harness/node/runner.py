"""The on-node trial runner: set up, warm up, measure, verify, tear down.

Runs inside a Ray task (or directly, in tests). Returns plain data; never raises for a
failing workload: the failure becomes the outcome, with the phase it happened in.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

import psutil

from collectors.base import Sample
from collectors.sampler import TelemetrySampler
from harness.node.outcome import TrialOutcome
from harness.node.stats import ci_fraction, summarize
from harness.node.tcp import retransmits, tcp_counters
from harness.node.throttle import cgroup_folders, read_stat, throttling
from harness.playbook.model import Settings
from results_db.vocabulary import TrialStatus
from workloads import UnsupportedParams, VerificationError, Workload, get_workload
from workloads.base import RankContext
from workloads.rendezvous import IFNAME_VARIABLES
from workloads.timers import IterationTimer

# Measured iterations are run in batches between stop checks, so a CUDA timer synchronises
# once per batch instead of once per iteration; a batch aims at this share of min_duration.
BATCH_SHARE = 0.05
MAX_BATCH = 1024


def warm_up(workload: Workload, iterations: int, timer: IterationTimer) -> None:
    """Run unmeasured iterations and wait for them to finish."""
    for _ in range(iterations):
        workload.run_iteration()
    timer.synchronize()


def measure(
    workload: Workload, settings: Settings, timer: IterationTimer, outcome: TrialOutcome
) -> None:
    """Time iterations until the stopping rule says so.

    Stops when both min_repetitions and min_duration_s are met (and, with ``target_ci``,
    the median's 95% CI is that tight: Phoronix's dynamic run count); max_repetitions and
    max_duration_s always win. The reason is stored in ``outcome.stop_reason``; a trial
    that stopped at a maximum before its CI target is flagged ``noisy``.
    """
    step, flush, facts = workload.timing_hooks(settings.flush_l2, settings.cuda_graph)
    outcome.context.update(facts)
    min_reps, max_reps = settings.min_repetitions, settings.max_repetitions
    min_s, max_s = settings.min_duration_s, settings.max_duration_s
    seconds: list[float] = []
    batch = 1
    t0 = time.perf_counter()
    while True:
        for _ in range(min(batch, max_reps - len(seconds))):
            if flush is not None:
                flush()  # outside the timed pair, as in do_bench
            timer.start()
            step()
            timer.stop()
        seconds += timer.collect()
        elapsed = time.perf_counter() - t0
        n = len(seconds)
        reason = None
        if n >= max_reps:
            reason = "max_repetitions"
        elif elapsed >= max_s:
            reason = "max_duration"
        elif n >= min_reps and elapsed >= min_s:
            if settings.target_ci is None:
                reason = "min_reached"
            elif ci_fraction(seconds) <= settings.target_ci:
                reason = "ci_reached"
        per_iteration = elapsed / n
        batch = max(1, min(MAX_BATCH, int(BATCH_SHARE * min_s / max(per_iteration, 1e-9))))
        # Multi-rank trials take rank 0's decision, so every rank runs the same iterations.
        stop, batch = workload.agree(reason is not None, batch)
        if stop:
            outcome.stop_reason = reason or "rank0"
            if settings.target_ci is not None and outcome.stop_reason.startswith("max_"):
                outcome.context["noisy"] = True
                outcome.context["ci_fraction"] = ci_fraction(seconds)
            break
    outcome.measure_seconds = time.perf_counter() - t0
    outcome.seconds = seconds


def run_trial(
    workload_name: str,
    params: dict[str, Any],
    settings: Settings | Mapping[str, Any],
    ranks: RankContext | None = None,
    env: dict[str, str] | None = None,
) -> TrialOutcome:
    """Run one trial (or one rank of it) on this node; every failure is captured with its
    phase. ``env`` is set in the process environment for the trial's duration only."""
    with _environment(env or {}):
        # Typed from here on: the dispatcher sends the model, scripts may send its dict.
        return _run_trial(workload_name, params, Settings.model_validate(settings), ranks)


@contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    # Worker processes are reused across trials: restore what was there before, the socket
    # interfaces a rank's rendezvous chose included (else the next trial takes them as the
    # user's).
    before = {k: os.environ.get(k) for k in (*env, *IFNAME_VARIABLES)}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_trial(
    workload_name: str,
    params: dict[str, Any],
    settings: Settings,
    ranks: RankContext | None,
) -> TrialOutcome:
    outcome = TrialOutcome(status=TrialStatus.OK, started_at=time.time())
    phase = "setup"
    workload: Workload | None = None
    sampler: TelemetrySampler | None = None
    try:
        cls = get_workload(workload_name)
        workload = cls(cls.Params.model_validate(params), ranks)
        workload.setup()
        outcome.metric_specs = [
            (m.name, m.unit, m.higher_is_better) for m in workload.metric_specs()
        ]
        timer = workload.make_timer()
        outcome.timer = timer.kind
        phase = "warmup"
        warm_up(workload, settings.warmup_iterations, timer)
        outcome.warmup_iterations = settings.warmup_iterations
        telemetry = settings.telemetry
        outcome.telemetry_interval_s = telemetry.interval_s
        outcome.device = workload.device()
        uuids = workload.gpu_uuids()
        outcome.gpu_uuid = uuids[0] if uuids else None
        sampler = TelemetrySampler(telemetry.sources, telemetry.interval_s, uuids)
        phase = "measure"
        sampler.start()
        before = cpu_snapshot()
        cgroups = cgroup_folders()
        quota_before = read_stat(cgroups)
        tcp_before = tcp_counters() if workload.network else None
        try:
            measure(workload, settings, timer, outcome)
        finally:
            sampler.stop()
        after = cpu_snapshot()
        if workload.network:
            outcome.context.update(retransmits(tcp_before, tcp_counters()))
        if ranks is None:  # a rank's peers on the same node are not "other" load
            outcome.context.update(contention(before, after, settings.contended_cores))
        wall = after[0] - before[0]
        outcome.context.update(throttling(quota_before, read_stat(cgroups)))
        if wall > 0 and outcome.seconds:  # time inside iterations / the loop's wall time
            outcome.context["duty"] = round(min(1.0, sum(outcome.seconds) / wall), 3)
        outcome.window = sampler.window
        phase = "verify"
        workload.verify()
        outcome.metrics = workload.derive(outcome.seconds)
        outcome.summaries = {k: summarize(v) for k, v in outcome.metrics.items() if v}
        outcome.work = asdict(workload.work())
        outcome.context.update(workload.context())
    except Exception as exc:
        _fail(outcome, phase, exc)
    finally:
        if sampler is not None:
            outcome.telemetry = sampler.samples
            outcome.sources = list(sampler.statuses.values())
        if workload is not None:
            # What the workload itself observed (a server's metrics), then its teardown.
            outcome.telemetry = [*outcome.telemetry, *workload.telemetry()]
            try:
                workload.teardown()
            except Exception as exc:
                if outcome.status == TrialStatus.OK:
                    _fail(outcome, "teardown", exc)
    outcome.finished_at = time.time()
    return outcome


def cpu_snapshot() -> tuple[float, float, float]:
    """(wall clock, this process's CPU seconds, every process's busy CPU seconds)."""
    own = psutil.Process().cpu_times()
    system = psutil.cpu_times()
    busy = sum(system) - system.idle - getattr(system, "iowait", 0.0)
    busy -= getattr(system, "guest", 0.0) + getattr(system, "guest_nice", 0.0)
    return time.monotonic(), own.user + own.system, busy


def contention(
    before: tuple[float, float, float], after: tuple[float, float, float], limit_cores: float
) -> dict[str, Any]:
    """How much CPU other processes used during the window, in cores on average;
    ``contended`` past ``limit_cores`` (the figure is then unreliable, not a regression).
    The default, 0.25, is well over Ray's idle daemons and well under a busy neighbour."""
    wall = after[0] - before[0]
    if wall <= 0:
        return {}
    others = max(0.0, (after[2] - before[2]) - (after[1] - before[1])) / wall
    out: dict[str, Any] = {"other_cpu_cores": round(others, 3)}
    if others > limit_cores:
        out["contended"] = True
    return out


def measure_idle(sources: list[str], interval_s: float, seconds: float) -> list[Sample]:
    """Telemetry of an idle node for ``seconds`` (the idle-power baseline)."""
    sampler = TelemetrySampler(sources, interval_s)
    sampler.start()
    time.sleep(seconds)
    sampler.stop()
    return sampler.samples


def _fail(outcome: TrialOutcome, phase: str, exc: BaseException) -> None:
    outcome.status = TrialStatus.FAILED
    outcome.failure_phase = phase
    words = str(exc).strip()
    if isinstance(exc, (UnsupportedParams, VerificationError)) and words:
        outcome.failure_reason = words  # the workload's own words say it all
    elif words:
        outcome.failure_reason = f"{type(exc).__name__}: {words}"
    else:  # never empty: an exception without a message is named by its type and phase
        outcome.failure_reason = f"{type(exc).__name__} (no message) in {phase}"
    outcome.failure_detail = "".join(traceback.format_exception(exc))
