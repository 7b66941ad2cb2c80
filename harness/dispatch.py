"""Dispatch placed trials as Ray tasks pinned to their nodes, one trial per node at a time.

A trial claims all of its node's CPUs and GPUs: nothing else runs beside a measurement, and
Ray sets OMP_NUM_THREADS to the CPUs granted (it would be 1 otherwise). Trials on different
nodes run concurrently. A trial past its timeout is cancelled (its worker killed) and
recorded as a timeout; a worker or node that dies fails its trial with that reason.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from harness.cluster import NodeInfo
from harness.placement import PlacedTrial
from harness.runner import TrialOutcome, measure_idle, run_trial

POLL_S = 0.5


@ray.remote(max_retries=0)
def _trial_task(workload: str, params: dict, settings: dict) -> TrialOutcome:
    return run_trial(workload, params, settings)


@ray.remote(max_retries=0)
def _idle_task(sources: list[str], interval_s: float, seconds: float) -> list:
    return measure_idle(sources, interval_s, seconds)


def _whole_node(node: NodeInfo) -> dict[str, float]:
    """Resources that claim a node outright: nothing else runs beside a measurement."""
    return {"num_cpus": node.resources.get("CPU", 0.0), "num_gpus": node.resources.get("GPU", 0.0)}


def idle_telemetry(
    nodes: list[NodeInfo], sources: list[str], interval_s: float, seconds: float
) -> dict[str, list]:
    """Idle telemetry of every node at once, each node claimed whole while it is measured."""
    refs = {
        n.ray_node_id: _idle_task.options(
            **_whole_node(n),
            scheduling_strategy=NodeAffinitySchedulingStrategy(n.ray_node_id, soft=False),
        ).remote(sources, interval_s, seconds)
        for n in nodes
    }
    return {node_id: ray.get(ref) for node_id, ref in refs.items()}


@dataclass
class _InFlight:
    trial: PlacedTrial
    deadline: float  # monotonic
    submitted_at: float  # wall clock: the stored start of a trial that never returns


def _lost(flight: _InFlight, phase: str, reason: str, status: str = "failed") -> TrialOutcome:
    """The outcome of a trial whose task returned none."""
    return TrialOutcome(
        status=status,
        failure_phase=phase,
        failure_reason=reason,
        started_at=flight.submitted_at,
        finished_at=time.time(),
    )


def _outcome_of(ref: ray.ObjectRef, flight: _InFlight) -> TrialOutcome:
    """The task's outcome, or a failed one naming what the cluster did to it."""
    node = f"{flight.trial.node.hostname} ({flight.trial.node.short_id})"
    try:
        return ray.get(ref)
    except ray.exceptions.NodeDiedError as exc:
        reason = f"node lost: {node}: {_first_line(exc)}"
    except ray.exceptions.OutOfMemoryError as exc:
        reason = f"killed by Ray's memory monitor on {node}: {_first_line(exc)}"
    except ray.exceptions.WorkerCrashedError as exc:
        reason = f"worker died on {node}: {_first_line(exc)}"
    except ray.exceptions.TaskUnschedulableError as exc:
        reason = f"cannot schedule on {node}: {_first_line(exc)}"
    except ray.exceptions.RayTaskError as exc:
        reason = f"task error on {node}: {_first_line(exc.cause or exc)}"
    except ray.exceptions.RayError as exc:
        reason = f"{type(exc).__name__} on {node}: {_first_line(exc)}"
    return _lost(flight, "dispatch", reason)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Dispatcher:
    """Runs trials over the cluster; reports each start and each outcome through callbacks."""

    def __init__(
        self,
        on_start: Callable[[PlacedTrial], None] = lambda t: None,
        on_done: Callable[[PlacedTrial, TrialOutcome], None] = lambda t, o: None,
    ) -> None:
        self.on_start = on_start
        self.on_done = on_done
        self._in_flight: dict[ray.ObjectRef, _InFlight] = {}

    def _submit(self, trial: PlacedTrial) -> None:
        node = trial.node
        ref = _trial_task.options(
            **_whole_node(node),
            scheduling_strategy=NodeAffinitySchedulingStrategy(node.ray_node_id, soft=False),
        ).remote(trial.spec.workload, trial.spec.params, trial.spec.settings.model_dump())
        deadline = time.monotonic() + trial.spec.settings.timeout_s
        self._in_flight[ref] = _InFlight(trial, deadline, time.time())
        self.on_start(trial)

    def run(self, trials: list[PlacedTrial]) -> None:
        """Run every trial; returns when all have an outcome. Ctrl-C cancels what is running."""
        queues: dict[str, deque[PlacedTrial]] = {}
        for t in trials:
            queues.setdefault(t.node.ray_node_id, deque()).append(t)
        busy: set[str] = set()
        try:
            while queues or self._in_flight:
                for node_id in list(queues):
                    if node_id not in busy:
                        self._submit(queues[node_id].popleft())
                        busy.add(node_id)
                        if not queues[node_id]:
                            del queues[node_id]
                now = time.monotonic()
                wait_s = min([POLL_S] + [f.deadline - now for f in self._in_flight.values()])
                ready, _ = ray.wait(list(self._in_flight), num_returns=1, timeout=max(0.0, wait_s))
                for ref in ready:
                    flight = self._in_flight.pop(ref)
                    busy.discard(flight.trial.node.ray_node_id)
                    self.on_done(flight.trial, _outcome_of(ref, flight))
                now = time.monotonic()
                for ref, flight in list(self._in_flight.items()):
                    if now >= flight.deadline:
                        ray.cancel(ref, force=True)
                        del self._in_flight[ref]
                        busy.discard(flight.trial.node.ray_node_id)
                        timeout_s = flight.trial.spec.settings.timeout_s
                        self.on_done(
                            flight.trial,
                            _lost(
                                flight,
                                "timeout",
                                f"exceeded timeout_s={timeout_s:g}; task cancelled",
                                status="timeout",
                            ),
                        )
        finally:
            for ref in list(self._in_flight):
                ray.cancel(ref, force=True)
            self._in_flight.clear()
