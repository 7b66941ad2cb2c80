"""A trial measured in rounds: one outcome from the outcomes of its rounds.

One measure loop's samples describe the loop's jitter, not how repeatable its median is:
the same key on an unchanged node can read 10-40% apart between campaigns while each
trial's 95% CI is about +-1%. With ``rounds: R`` a trial is measured R times, each round a
fresh set-up, warm-up and measure loop, and the rounds of every trial of the campaign are
interleaved (round 1 of every trial, then round 2, as asv interleaves its rounds), so
they are apart in time and process. The stored figure is the median of the round
medians, its CI the median's CI over the rounds; the samples are every round's; the
within-round spread (the rounds' median CV) and the between-round spread (the CV of the
round medians) are in the context. Telemetry, window and energy are the first round's.
"""

from __future__ import annotations

import dataclasses
import statistics

from harness.node.outcome import TrialOutcome
from harness.node.stats import summarize


def merge_rounds(outcomes: list[TrialOutcome]) -> TrialOutcome:
    """One outcome for a trial from its rounds' ok outcomes, in the order they ran."""
    first = outcomes[0]
    if len(outcomes) == 1:
        return first
    merged = dataclasses.replace(first, context=dict(first.context))
    merged.seconds = [s for o in outcomes for s in o.seconds]
    merged.metrics = {
        name: [v for o in outcomes for v in o.metrics.get(name, [])] for name in first.metrics
    }
    spread: dict[str, dict[str, float | None]] = {}
    medians_of: dict[str, list[float]] = {}
    merged.summaries = {}
    for name, values in merged.metrics.items():
        rounds = [o.summaries.get(name) or summarize(o.metrics.get(name, [])) for o in outcomes]
        medians = [r["median"] for r in rounds if r.get("median") is not None]
        if not values or not medians:
            continue
        whole = summarize(values)  # every sample: the percentiles, min, max
        over = summarize(medians)  # the rounds: the figure and its uncertainty
        whole.update(
            median=over["median"],
            ci_low=over["ci_low"],
            ci_high=over["ci_high"],
            ci_level=over["ci_level"],
        )
        merged.summaries[name] = whole
        cvs = [r["cv"] for r in rounds if r.get("cv") is not None]
        spread[name] = {
            "within_cv": round(statistics.median(cvs), 5) if cvs else None,
            "between_cv": round(over["cv"], 5) if over.get("cv") is not None else None,
        }
        medians_of[name] = medians
    for o in outcomes[1:]:  # a flag of any round (contended, throttled, ...) is the trial's
        merged.context.update({k: True for k, v in o.context.items() if v is True})
    merged.context["rounds"] = len(outcomes)
    merged.context["round_medians"] = medians_of
    merged.context["round_spread"] = spread
    merged.measure_seconds = sum(o.measure_seconds or 0.0 for o in outcomes)
    merged.finished_at = outcomes[-1].finished_at
    return merged
