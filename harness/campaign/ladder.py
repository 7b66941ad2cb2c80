"""Load ladders (a benchmark's ``ladder:``): its ``over`` sweep climbed one step at a time,
lowest first, on each node (or group of nodes) and for each setting of its other params,
stopping once the climb no longer pays:

- saturated: the primary metric beat the best step so far by less than ``min_gain``
  (guidellm's and vLLM's sweeps stop at the knee the same way);
- errors: more than ``max_error_rate`` of the step's requests failed;
- latency: a metric's p99 passed its ``max_p99`` limit;
- failed: the step itself failed.

The steps above the stop are stored as ``skipped`` with the reason, so a resume does not
climb them again and the results say how far the ladder went.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from harness.campaign.placement import PlacedTrial
from harness.node.outcome import TrialOutcome
from harness.playbook.model import short_hash
from results_db.vocabulary import TrialStatus
from workloads import get_workload


def group_of(trial: PlacedTrial) -> str | None:
    """The ladder a trial is a step of: its benchmark, where it runs when placed per node,
    and its params but the climbed one; None for a trial of no ladder."""
    spec = trial.spec
    if spec.ladder is None:
        return None
    rest = {k: v for k, v in spec.params.items() if k != spec.ladder.over}
    where = [n.identity for n in trial.ranks] if spec.each else "*"
    return "ladder " + short_hash([spec.benchmark, where, list(trial.gpus), rest])


def step_of(trial: PlacedTrial) -> float:
    assert trial.spec.ladder is not None
    return float(trial.spec.params[trial.spec.ladder.over])


def in_climbing_order(trials: list[PlacedTrial]) -> list[PlacedTrial]:
    """The same trials, each ladder's steps moved into ascending order within the places its
    steps held (everything else stays where it was)."""
    places: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(trials):
        g = group_of(t)
        if g is not None:
            places[g].append(i)
    out = list(trials)
    for positions in places.values():
        steps = sorted((trials[i] for i in positions), key=step_of)
        for i, t in zip(positions, steps, strict=True):
            out[i] = t
    return out


@dataclass
class _Climb:
    best: float | None = None
    stopped: str | None = None


@dataclass
class Ladders:
    """The climbs of one campaign: after each step, which higher steps are not to run."""

    trials: list[PlacedTrial]
    climbs: dict[str, _Climb] = field(default_factory=lambda: defaultdict(_Climb))

    def after(self, trial: PlacedTrial, outcome: TrialOutcome) -> tuple[list[PlacedTrial], str]:
        """The steps above ``trial`` to skip now, and why (none while the climb pays)."""
        group = group_of(trial)
        if group is None or self.climbs[group].stopped:
            return [], ""
        reason = self._stop_reason(trial, outcome, self.climbs[group])
        if reason is None:
            return [], ""
        self.climbs[group].stopped = reason
        step = step_of(trial)
        above = [t for t in self.trials if group_of(t) == group and step_of(t) > step]
        return above, reason

    @staticmethod
    def _stop_reason(trial: PlacedTrial, outcome: TrialOutcome, climb: _Climb) -> str | None:
        ladder = trial.spec.ladder
        assert ladder is not None
        at = f"{ladder.over}={trial.spec.params[ladder.over]}"
        if outcome.status != TrialStatus.OK:
            return f"the step at {at} did not pass"
        requests = outcome.context.get("requests") or 0
        completed = outcome.context.get("completed", requests)
        if requests and (requests - completed) / requests > ladder.max_error_rate:
            share = 100 * (requests - completed) / requests
            return (
                f"{share:.0f}% of requests failed at {at} (limit {100 * ladder.max_error_rate:g}%)"
            )
        for metric, limit in ladder.max_p99.items():
            p99 = (outcome.summaries.get(metric) or {}).get("p99")
            if p99 is not None and p99 > limit:
                return f"{metric} p99 {p99:.4g} passed {limit:g} at {at}"
        primary = get_workload(trial.spec.workload).primary_for(trial.spec.params)
        median = (outcome.summaries.get(primary) or {}).get("median")
        if median is None:
            return None
        higher = next((h for name, _, h in outcome.metric_specs if name == primary), True)
        value = median if higher else -median
        best = climb.best
        if best is not None and value < best + abs(best) * ladder.min_gain:
            gain = 100 * (value - best) / abs(best) if best else 0.0
            return (
                f"saturated at {at}: {primary} {median:.4g} is {gain:+.1f}% on the best step "
                f"(needs +{100 * ladder.min_gain:g}%)"
            )
        climb.best = value if best is None else max(best, value)
        return None
