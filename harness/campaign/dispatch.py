"""Dispatch placed trials to their nodes: a Ray task for a single-rank trial, one pinned Ray
task per rank for a multi-rank trial (collectives), which rendezvous at rank 0's node.

A trial claims all of each of its nodes' CPUs and GPUs (split among its ranks there):
nothing runs beside a measurement, a GPU never serves two trials, and Ray sets
OMP_NUM_THREADS to the CPUs granted (it would be 1 otherwise). Trials on disjoint nodes run
concurrently; a trial waiting for nodes reserves them, so later smaller trials cannot starve
it. What a trial holds beyond that (one GPU of a node, an endpoint, a ladder, the hosts it
loads) is in ``harness.campaign.claims``. Ray cannot be asked for one particular GPU, so the
dispatcher keeps GPUs apart itself and shows a per-GPU trial its GPU through
CUDA_VISIBLE_DEVICES, in a fresh worker process (CUDA reads the variable once per process).
The hosts of an endpoint a load names (`server_on`) are watched by a telemetry actor in the
trial's window. A trial past its timeout is
cancelled (its processes killed) and recorded as a timeout; one whose node leaves the cluster
fails with "node lost".
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from harness.campaign.claims import claims, isolated, overlaps
from harness.campaign.placement import PlacedTrial, gpu_ids
from harness.cluster.inventory import NodeInfo
from harness.node.outcome import TrialOutcome
from harness.node.runner import measure_idle, run_trial
from harness.playbook.model import Settings
from results_db.vocabulary import TrialStatus
from workloads import get_workload
from workloads.base import RankContext
from workloads.errors import first_line
from workloads.rendezvous import IFNAME_VARIABLES

POLL_S = 0.5
# A running trial whose node Ray has declared dead is ended this long after (its task may
# never return: a task leased to a node cut off can wait for it until the trial's timeout),
# the cluster asked every REAP_EVERY_S.
LOST_GRACE_S = 5.0
REAP_EVERY_S = 2.0
RENDEZVOUS_TIMEOUT_S = 120
# A process that vanished with its node is reported before Ray's health checks mark the node
# dead; wait this long for the verdict before calling it a worker crash.
NODE_DEATH_GRACE_S = 30.0


def forwarded_env(workload: str, params: dict) -> dict[str, str]:
    """The driver's values of the environment variables the workload reads (an endpoint's API
    key), and the socket interfaces a user named for multi-rank groups: handed to the task as
    an argument, so remote nodes need not hold them, and never part of the stored params."""
    names = (*get_workload(workload).forwarded_env(params), *IFNAME_VARIABLES)
    return {name: os.environ[name] for name in names if name in os.environ}


# A trial, or one rank of a multi-rank one (``ctx``), as a task: its worker process (torch
# imported) serves the campaign's next trials too; a fresh actor per rank per trial cost a
# new process each, 2-3 CPU-seconds.
@ray.remote(max_retries=0)
def _trial_task(
    workload: str, params: dict, settings: Settings, env: dict, ctx: RankContext | None = None
) -> TrialOutcome:
    if ctx is not None:  # the rank's own node address, for its socket interfaces
        ctx = dataclasses.replace(ctx, node_ip=ray.util.get_node_ip_address())
    return run_trial(workload, params, settings, ctx, env=env)


# A worker process that ran CUDA has fixed its visible GPUs: a per-GPU trial, and a rank
# holding a GPU share, gets a new one.
_gpu_trial_task = ray.remote(max_retries=0, max_calls=1)(_trial_task._function)


# Only asks for a free port: safe to run again where its worker died (a worker Ray was
# still stopping for an earlier trial's cancelled rank has taken it, on a loaded machine).
@ray.remote(num_cpus=0, max_retries=2)
def _rendezvous_endpoint() -> tuple[str, int]:
    """Rank 0's node's address and a free TCP port there, for the process-group rendezvous."""
    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    return ray.util.get_node_ip_address(), port


@ray.remote(num_cpus=0, max_restarts=0)
class _Watcher:
    """The telemetry of a node hosting an endpoint, sampled while a trial elsewhere loads it
    (`server_on`): it claims nothing, so it never competes with the server it watches."""

    def start(self, sources: list[str], interval_s: float) -> None:
        from collectors.sampler import TelemetrySampler

        self.sampler = TelemetrySampler(sources, interval_s)
        self.sampler.start()

    def stop(self) -> list:
        self.sampler.stop()
        return self.sampler.samples


def server_samples(
    trial: PlacedTrial, node: NodeInfo, samples: list, outcome: TrialOutcome
) -> list:
    """A watched server node's samples within the trial's measured window (one interval of
    margin), each device named ``id8:device`` (the node's short id: the stored device names
    are short) so the energy of record can find them."""
    lo, hi = outcome.window or (outcome.started_at, outcome.finished_at)
    margin = trial.spec.settings.telemetry.interval_s
    prefix = f"{node.short_id}:"
    return [
        dataclasses.replace(s, device=prefix + s.device)
        for s in samples
        if lo - margin <= s.t <= hi + margin
    ]


def on_driver_clock(outcome: TrialOutcome, offset_s: float) -> None:
    """Move the times a node stamped on its clock (window, start, end, telemetry) onto the
    driver's, by the node's clock offset; the context says by how much."""
    outcome.context["clock_offset_s"] = round(offset_s, 4)
    if not offset_s:
        return
    if outcome.window:
        outcome.window = (outcome.window[0] - offset_s, outcome.window[1] - offset_s)
    if outcome.started_at:
        outcome.started_at -= offset_s
    if outcome.finished_at:
        outcome.finished_at -= offset_s
    outcome.telemetry = [dataclasses.replace(x, t=x.t - offset_s) for x in outcome.telemetry]


@ray.remote(max_retries=0)
def _idle_task(sources: list[str], interval_s: float, seconds: float) -> list:
    return measure_idle(sources, interval_s, seconds)


def _share(node: NodeInfo, ways: int = 1) -> dict[str, float]:
    """A 1/ways share of a node's CPUs and GPUs: ``ways`` ranks together claim it whole."""
    return {
        "num_cpus": node.resources.get("CPU", 0.0) / ways,
        "num_gpus": node.resources.get("GPU", 0.0) / ways,
    }


def _gpu_request(trial: PlacedTrial) -> dict[str, float]:
    """Ray resources of a per-GPU trial: one GPU and its share of the CPUs when isolated."""
    node = trial.node
    if not isolated(trial):
        return _share(node)
    count = max(1, len(gpu_ids(node)))
    return {"num_cpus": node.resources.get("CPU", 0.0) / count, "num_gpus": 1}


def _pin(node: NodeInfo) -> NodeAffinitySchedulingStrategy:
    return NodeAffinitySchedulingStrategy(node.ray_node_id, soft=False)


def idle_telemetry(
    nodes: list[NodeInfo], sources: list[str], interval_s: float, seconds: float
) -> dict[str, list]:
    """Idle telemetry of every node at once, each node claimed whole while it is measured."""
    refs = {
        n.ray_node_id: _idle_task.options(**_share(n), scheduling_strategy=_pin(n)).remote(
            sources, interval_s, seconds
        )
        for n in nodes
    }
    return {node_id: ray.get(ref) for node_id, ref in refs.items()}


def alive_nodes() -> set[str]:
    return {n["NodeID"] for n in ray.nodes() if n.get("Alive")}


def node_died(node_id: str, grace_s: float = NODE_DEATH_GRACE_S) -> bool:
    """Whether the node is (or within ``grace_s`` is declared) gone from the cluster."""
    deadline = time.monotonic() + grace_s
    while node_id in alive_nodes():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)
    return True


@dataclass
class _InFlight:
    trial: PlacedTrial
    refs: list[ray.ObjectRef]  # one per rank (a single task for a single-rank trial)
    deadline: float  # monotonic
    submitted_at: float  # wall clock: the stored start of a trial that never returns
    done: dict[int, TrialOutcome] = field(default_factory=dict)
    watchers: list[Any] = field(default_factory=list)  # one per server node, in order
    lost_since: float | None = None  # monotonic: when one of its nodes was seen gone


def _cancel_running(flight: _InFlight) -> None:
    """Kill the processes of the flight's tasks (ranks) that have not returned.

    A rank whose result is already in is left alone, though the dispatcher has not read it:
    its worker may already be running another task (Ray reuses workers), and a forced
    cancel kills whatever that worker runs. When a failed rank ended a trial, the next
    trial's rendezvous died this way on a loaded machine ("The worker died unexpectedly").
    """
    waiting = [ref for rank, ref in enumerate(flight.refs) if rank not in flight.done]
    if not waiting:
        return
    with contextlib.suppress(Exception):  # on a node gone: every one is still waiting
        _, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=0)
    for ref in waiting:
        with contextlib.suppress(Exception):  # on a node gone: nothing to stop
            ray.cancel(ref, force=True)


def _lost(
    flight: _InFlight, phase: str, reason: str, status: TrialStatus = TrialStatus.FAILED
) -> TrialOutcome:
    """The outcome of a trial (or rank) whose process returned none."""
    return TrialOutcome(
        status=status,
        failure_phase=phase,
        failure_reason=reason,
        started_at=flight.submitted_at,
        finished_at=time.time(),
    )


def node_lost(node: NodeInfo) -> str:
    """The failure reason of a trial whose node left the cluster, naming the node."""
    return f"node lost: {node.hostname} ({node.short_id}) left the cluster"


def _rank_outcome(ref: ray.ObjectRef, flight: _InFlight, rank: int) -> TrialOutcome:
    """A rank's outcome, or a failed one naming what the cluster did to it."""
    node = flight.trial.ranks[rank]
    where = f"{node.hostname} ({node.short_id})"
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as exc:
        crashed = isinstance(
            exc,
            (
                ray.exceptions.WorkerCrashedError,
                ray.exceptions.RayActorError,
                ray.exceptions.NodeDiedError,
            ),
        )
        if node_died(node.ray_node_id, NODE_DEATH_GRACE_S if crashed else 0.0):
            reason = node_lost(node)
        elif isinstance(exc, ray.exceptions.OutOfMemoryError):
            reason = f"killed by Ray's memory monitor on {where}: {first_line(exc)}"
        elif isinstance(exc, (ray.exceptions.WorkerCrashedError, ray.exceptions.RayActorError)):
            reason = f"worker died on {where}: {first_line(exc)}"
        elif isinstance(exc, ray.exceptions.RayTaskError):
            reason = f"task error on {where}: {first_line(exc.cause or exc)}"
        else:
            reason = f"{type(exc).__name__} on {where}: {first_line(exc)}"
    return _lost(flight, "dispatch", reason)


def combine(trial: PlacedTrial, outcomes: dict[int, TrialOutcome]) -> TrialOutcome:
    """One outcome for the trial: rank 0's when every rank passed (with every host's TCP
    retransmissions), else the first failure among the ranks that reported (a failure may
    end the trial before the others do)."""
    if len(trial.ranks) == 1:
        return next(iter(outcomes.values()))
    for rank in sorted(outcomes):
        o = outcomes[rank]
        if o.status != TrialStatus.OK:
            where = f"rank {rank} on {trial.ranks[rank].hostname}"
            if not (o.failure_reason or "").startswith(where):  # the rendezvous names it
                o.failure_reason = f"{where}: {o.failure_reason}"
            return o
    merged = outcomes[0]
    shares: dict[str, float] = {}
    for rank, o in sorted(outcomes.items()):
        share = o.context.get("tcp_retransmit_share")
        if share is not None:  # ranks on one host read the same counters: keep the larger
            host = trial.ranks[rank].hostname
            shares[host] = max(shares.get(host, 0.0), share)
        if o.context.get("retransmits"):  # resent on a link, whichever end counted it
            merged.context["retransmits"] = True
    if shares:
        merged.context["tcp_retransmit_share_by_host"] = shares
    return merged


class Dispatcher:
    """Runs trials over the cluster; reports each start and each outcome through callbacks."""

    def __init__(
        self,
        on_start: Callable[[PlacedTrial], None] = lambda t: None,
        on_done: Callable[[PlacedTrial, TrialOutcome], None] = lambda t, o: None,
        clock_offsets: dict[str, float] | None = None,
    ) -> None:
        self.on_start = on_start
        self.on_done = on_done
        # Each node's clock minus the driver's: a trial's times are moved onto the driver's
        # clock, so windows and samples of different hosts compare.
        self.clock_offsets = clock_offsets or {}
        self._in_flight: list[_InFlight] = []
        self._pending: list[PlacedTrial] = []
        self._dropped: set[str] = set()  # keys of trials drop() took back

    def _submit(self, trial: PlacedTrial) -> _InFlight:
        spec = trial.spec
        settings = spec.settings  # the typed model travels; Ray pickles it
        env = forwarded_env(spec.workload, spec.params)
        now = time.monotonic()
        flight = _InFlight(trial, [], now + spec.settings.timeout_s, time.time())
        if trial.servers:
            flight.watchers = [
                _Watcher.options(scheduling_strategy=_pin(n)).remote() for n in trial.servers
            ]
            telemetry = spec.settings.telemetry
            ray.get(
                [w.start.remote(telemetry.sources, telemetry.interval_s) for w in flight.watchers],
                timeout=RENDEZVOUS_TIMEOUT_S,
            )
        if trial.gpus:
            env = {**env, "CUDA_VISIBLE_DEVICES": ",".join(trial.gpu_ids)}
            flight.refs = [
                _gpu_trial_task.options(
                    **_gpu_request(trial), scheduling_strategy=_pin(trial.node)
                ).remote(spec.workload, spec.params, settings, env)
            ]
            return flight
        if spec.layout is None:
            node = trial.node
            flight.refs = [
                _trial_task.options(**_share(node), scheduling_strategy=_pin(node)).remote(
                    spec.workload, spec.params, settings, env
                )
            ]
            return flight
        per_node = spec.layout.per_node
        hosts = tuple(n.hostname for n in trial.ranks)
        try:
            addr, port = ray.get(
                _rendezvous_endpoint.options(scheduling_strategy=_pin(trial.ranks[0])).remote(),
                timeout=RENDEZVOUS_TIMEOUT_S,
            )
        except ray.exceptions.RayError as exc:
            flight.done = {0: _lost(flight, "dispatch", f"rank 0 did not start: {first_line(exc)}")}
            return flight
        flight.refs = []
        for rank, node in enumerate(trial.ranks):
            share = _share(node, per_node)
            task = _gpu_trial_task if share["num_gpus"] else _trial_task
            ctx = RankContext(rank, len(trial.ranks), rank % per_node, addr, port, hosts)
            flight.refs.append(
                task.options(**share, scheduling_strategy=_pin(node)).remote(
                    spec.workload, spec.params, settings, env, ctx
                )
            )
        return flight

    def _finish(self, flight: _InFlight, outcome: TrialOutcome) -> None:
        _cancel_running(flight)  # past its timeout, its node lost, or a failed rank's peers
        offset = self.clock_offsets.get(flight.trial.node.ray_node_id)
        if offset is not None:
            on_driver_clock(outcome, offset)
        if flight.watchers:
            self._add_server_telemetry(flight, outcome)
        self._in_flight.remove(flight)
        self.on_done(flight.trial, outcome)

    def _add_server_telemetry(self, flight: _InFlight, outcome: TrialOutcome) -> None:
        """The watched server nodes' samples of the trial's window go with its telemetry."""
        servers = flight.trial.servers
        try:
            got = ray.get([w.stop.remote() for w in flight.watchers], timeout=60)
        except ray.exceptions.RayError as exc:
            outcome.context["server_telemetry"] = f"lost: {first_line(exc)}"
            got = []
        finally:
            for w in flight.watchers:
                ray.kill(w)
        for node, samples in zip(servers, got, strict=False):
            shift = self.clock_offsets.get(node.ray_node_id, 0.0)
            samples = [dataclasses.replace(x, t=x.t - shift) for x in samples] if shift else samples
            outcome.telemetry = [
                *outcome.telemetry,
                *server_samples(flight.trial, node, samples, outcome),
            ]
        outcome.context["server_nodes"] = [n.short_id for n in servers]
        outcome.context["server_hosts"] = [f"{n.hostname} ({n.short_id})" for n in servers]
        # For throughput per GPU: the GPUs Ray counts on the endpoint's hosts.
        outcome.context["server_gpus"] = sum(int(n.resources.get("GPU", 0)) for n in servers)

    def run(self, trials: list[PlacedTrial]) -> None:
        """Run every trial (but those :meth:`drop` takes back); returns when all have an
        outcome. An error cancels what is running; Ctrl-C leaves that to :meth:`cancel_all`."""
        self._pending = pending = list(trials)
        try:
            next_reap = 0.0
            while pending or self._in_flight:
                self._start_what_fits(pending)
                self._collect()
                self._expire()
                if time.monotonic() >= next_reap:
                    next_reap = time.monotonic() + REAP_EVERY_S
                    self._reap_lost()
        except KeyboardInterrupt:
            # Left to the caller's cancel_all(), after it has marked the campaign: a
            # scheduler's SIGTERM stops the nodes' Ray too, and asking a Ray whose raylet is
            # going can hang, or end this process, before the mark is written.
            raise
        except BaseException:
            self.cancel_all()
            raise

    def cancel_all(self) -> None:
        """Cancel the trials running (their processes killed); they get no outcome."""
        for flight in self._in_flight:
            _cancel_running(flight)
        self._in_flight.clear()

    def drop(self, trials: list[PlacedTrial]) -> list[PlacedTrial]:
        """Take back trials not started yet (a ladder stopped below them): the ones taken."""
        keys = {t.key for t in trials}
        taken = [t for t in self._pending if t.key in keys]
        self._pending[:] = [t for t in self._pending if t.key not in keys]
        self._dropped |= {t.key for t in taken}
        return taken

    def _start_what_fits(self, pending: list[PlacedTrial]) -> None:
        busy = {c for f in self._in_flight for c in claims(f.trial)}
        reserved: set[tuple[str, str | None]] = set()
        alive = alive_nodes() if pending else set()
        for trial in list(pending):
            # Taken back by a callback meanwhile; a set, as `trial in pending` would make
            # each pass quadratic (2 s a pass at 4,000 pending trials).
            if trial.key in self._dropped:
                continue
            if not trial.node_ids <= alive:
                pending.remove(trial)
                gone = next(n for n in trial.ranks if n.ray_node_id not in alive)
                self.on_done(
                    trial, TrialOutcome.not_run(TrialStatus.FAILED, "dispatch", node_lost(gone))
                )
                continue
            wants = claims(trial)
            if overlaps(wants, busy | reserved):
                reserved |= wants  # first come, first served: hold what it waits for
                continue
            pending.remove(trial)
            busy |= wants
            flight = self._submit(trial)
            self._in_flight.append(flight)
            self.on_start(trial)
            if flight.done:  # failed before any rank ran
                self._finish(flight, flight.done[0])

    def _collect(self) -> None:
        waiting = {
            ref: f for f in self._in_flight for ref in f.refs if f.refs.index(ref) not in f.done
        }
        if not waiting:
            time.sleep(0.01)
            return
        now = time.monotonic()
        wait_s = min([POLL_S] + [f.deadline - now for f in self._in_flight])
        ready, _ = ray.wait(list(waiting), num_returns=1, timeout=max(0.0, wait_s))
        for ref in ready:
            flight = waiting[ref]
            rank = flight.refs.index(ref)
            flight.done[rank] = _rank_outcome(ref, flight, rank)
            # One failed rank ends the trial: its peers would wait for it in the rendezvous
            # or the next collective until the timeout. Their processes are killed.
            if len(flight.done) == len(flight.refs) or flight.done[rank].status != TrialStatus.OK:
                self._finish(flight, combine(flight.trial, flight.done))

    def _reap_lost(self) -> None:
        """End running trials on nodes Ray declared dead, LOST_GRACE_S after it was seen
        (Ray's own error for them, when it comes, is taken first)."""
        if not self._in_flight:
            return
        alive = alive_nodes()
        now = time.monotonic()
        for flight in list(self._in_flight):
            gone = [n for n in flight.trial.ranks if n.ray_node_id not in alive]
            if not gone:
                continue
            flight.lost_since = flight.lost_since or now
            if now - flight.lost_since < LOST_GRACE_S:
                continue
            self._finish(flight, _lost(flight, "dispatch", node_lost(gone[0])))

    def _expire(self) -> None:
        now = time.monotonic()
        for flight in [f for f in self._in_flight if now >= f.deadline]:
            timeout_s = flight.trial.spec.settings.timeout_s
            self._finish(
                flight,
                _lost(
                    flight,
                    "timeout",
                    f"exceeded timeout_s={timeout_s:g}; task cancelled",
                    status=TrialStatus.TIMEOUT,
                ),
            )
