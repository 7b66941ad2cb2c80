"""Compare stored results: two campaigns, two hardware classes or two time windows; and a
series' history with its step changes.

Trials are matched by trial key between campaigns (same benchmark, workload, parameters and,
for per-node trials, node), and by workload and canonical parameters across hardware or
time. Each side's raw per-iteration samples of a metric are pooled (every campaign weighing
the same) and compared with the two-sided Mann-Whitney U test. Iterations of one trial are
not fully independent (drift, clock changes), so small p-values deserve a second campaign
before a verdict is trusted.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scipy.stats import mannwhitneyu
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from results_db.models import Metric, Node, RawSample
from results_db.query import QueryError, add_node_labels, latest_metrics, value_clause

MIN_SAMPLES = 3  # fewer than this per side (e.g. energy figures, n=1) is not tested


@dataclass
class Side:
    """One side of a comparison: a campaign, a hardware class or model glob, a time window."""

    label: str
    campaign: str | None = None
    hardware: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def parse_window(text: str) -> tuple[datetime | None, datetime | None]:
    """'2026-11-01..2026-11-10' (either end may be empty) -> (since, until)."""
    start, sep, end = text.partition("..")
    if not sep:
        raise QueryError(f"time window {text!r}: expected START..END (ISO dates, either empty)")
    try:
        return (
            datetime.fromisoformat(start) if start else None,
            datetime.fromisoformat(end) if end else None,
        )
    except ValueError as exc:
        raise QueryError(f"time window {text!r}: {exc}") from None


def _pooled(
    session: Session,
    side: Side,
    by_trial_key: bool,
    workload: str | None,
    metrics: list[str],
    primary_only: bool = True,
) -> dict[tuple, dict[str, Any]]:
    """{(match key, metric): samples by campaign and facts} for one side's latest ok trials;
    without ``metrics``, only each workload's primary metric (time and throughput of a GEMM
    are one fact: one row, one verdict) unless ``primary_only`` is off."""
    latest = latest_metrics(samples=True)
    q, t = latest.query, latest.trials
    if side.campaign:
        q = q.where(t.c.campaign_id == side.campaign)
    if side.hardware:
        q = q.where(
            or_(
                Node.hardware_class == side.hardware,
                value_clause(Node.gpu_model, side.hardware),
                value_clause(Node.cpu_model, side.hardware),
            )
        )
    if side.since:
        q = q.where(t.c.started_at >= side.since)
    if side.until:
        q = q.where(t.c.started_at < side.until)
    if workload:
        q = q.where(value_clause(t.c.workload, workload))
    if metrics:
        q = q.where(Metric.name.in_(metrics))
    else:
        q = q.where(Metric.name.not_like("rank_time.%"))
        if primary_only:  # trials stored before workloads declared one keep every metric
            q = q.where(
                or_(
                    Metric.name == t.c.primary_metric,
                    t.c.primary_metric == "",
                    t.c.primary_metric.is_(None),
                )
            )
    out: dict[tuple, dict[str, Any]] = {}
    for r in session.execute(q):
        match = (r.trial_key,) if by_trial_key else (r.workload, r.params_hash)
        entry = out.setdefault(
            (match, r.metric),
            {
                "workload": r.workload,
                "params": r.params,
                "param_defaults": (r.workload_meta or {}).get("param_defaults"),
                "unit": r.unit,
                "higher_is_better": r.higher_is_better,
                "by_campaign": {},
                "trials": set(),
                "versions": set(),
            },
        )
        entry["by_campaign"].setdefault(r.campaign, []).append(r.value)
        entry["trials"].add(r.trial)
        entry["versions"].add(r.workload_version or "")
    return out


def equal_weight(by_campaign: dict[str, list[float]]) -> list[float]:
    """One side's samples with every campaign weighing the same: from each, as many evenly
    spaced order statistics as the smallest campaign has samples (pooling raw samples let
    the campaign that ran the most iterations decide a time window's median)."""
    if len(by_campaign) == 1:
        return next(iter(by_campaign.values()))
    k = min(len(v) for v in by_campaign.values())
    out: list[float] = []
    for values in by_campaign.values():
        ordered = sorted(values)
        n = len(ordered)
        out += [ordered[(2 * i + 1) * n // (2 * k)] for i in range(k)]
    return out


def change_pct(baseline: float, candidate: float, higher_is_better: bool) -> float:
    """The change in percent, positive when better, in the metric's rate form: a time that
    grows 27.7x reads -96.4%, like the throughput it is the inverse of, not -2670%."""
    if higher_is_better:
        return (candidate / baseline - 1.0) * 100.0 if baseline else float("inf")
    return (baseline / candidate - 1.0) * 100.0 if candidate else float("inf")


def compare(
    session: Session,
    base: Side,
    cand: Side,
    *,
    workload: str | None = None,
    metrics: list[str] | None = None,
    threshold_pct: float = 5.0,
    alpha: float = 0.05,
    all_metrics: bool = False,
) -> list[dict[str, Any]]:
    """One record per matched (benchmark, primary metric; every metric with
    ``all_metrics``): medians, change, p-value and verdict, worst change first.

    ``change_pct`` is signed so that positive is better whatever the metric's direction.
    The verdict is better/worse only when the change is significant (p < alpha) and at
    least ``threshold_pct``; ``regression`` marks the worse ones. A side spanning several
    campaigns (hardware, time windows) weighs each campaign the same.
    """
    by_key = bool(base.campaign and cand.campaign)
    left = _pooled(session, base, by_key, workload, metrics or [], not all_metrics)
    right = _pooled(session, cand, by_key, workload, metrics or [], not all_metrics)
    records = []
    for k in sorted(set(left) & set(right), key=str):
        b, c = left[k], right[k]
        b["values"], c["values"] = equal_weight(b["by_campaign"]), equal_weight(c["by_campaign"])
        if len(b["values"]) < MIN_SAMPLES or len(c["values"]) < MIN_SAMPLES:
            continue
        mb, mc = statistics.median(b["values"]), statistics.median(c["values"])
        ratio = mc / mb if mb else float("inf")
        change = change_pct(mb, mc, b["higher_is_better"])
        p = float(mannwhitneyu(b["values"], c["values"], alternative="two-sided").pvalue)
        significant = p < alpha
        verdict = "same"
        if b["versions"] != c["versions"] or len(b["versions"]) > 1:
            # The workload's conventions changed between the sides: figures differ in
            # meaning, so no verdict (asv's benchmark version rule).
            verdict = "version changed"
        elif significant and abs(change) >= threshold_pct:
            verdict = "better" if change > 0 else "worse"
        records.append(
            {
                "workload": b["workload"],
                "params": b["params"],
                "param_defaults": b["param_defaults"],
                "workload_version": ",".join(sorted(b["versions"] | c["versions"])),
                "metric": k[1],
                "unit": b["unit"],
                "higher_is_better": b["higher_is_better"],
                "baseline": base.label,
                "candidate": cand.label,
                "baseline_median": mb,
                "candidate_median": mc,
                "ratio": ratio,
                "change_pct": change,
                "p_value": p,
                "significant": significant,
                "verdict": verdict,
                "regression": verdict == "worse",
                "baseline_n": len(b["values"]),
                "candidate_n": len(c["values"]),
                "baseline_trials": len(b["trials"]),
                "candidate_trials": len(c["trials"]),
                "baseline_campaigns": len(b["by_campaign"]),
                "candidate_campaigns": len(c["by_campaign"]),
            }
        )
    records.sort(key=lambda r: r["change_pct"])  # the worst change first
    return records


def history(
    session: Session,
    *,
    workload: str,
    metric: str,
    where: list[tuple[str, Any]],
    node: str | None = None,
    hardware: str | None = None,
    threshold_pct: float = 5.0,
    alpha: float = 0.05,
) -> list[dict[str, Any]]:
    """Every ok trial of the series in time order, each step change against the previous
    trial of the same (node or hardware class, parameters) marked like a compare verdict."""
    latest = latest_metrics(samples=False)
    t = latest.trials
    q = latest.query.where(
        Node.id.is_not(None), Metric.name == metric, value_clause(t.c.workload, workload)
    ).order_by(t.c.started_at)
    if node:
        q = q.where(value_clause(Node.hostname, node))
    if hardware:
        q = q.where(
            or_(
                Node.hardware_class == hardware,
                value_clause(Node.gpu_model, hardware),
                value_clause(Node.cpu_model, hardware),
            )
        )
    for key, value in where:
        q = q.where(value_clause(t.c.params[key.removeprefix("params.")], value))
    rows = session.execute(q).all()
    samples: dict[int, list[float]] = {r.metric_id: [] for r in rows}
    for mid, value in session.execute(
        select(RawSample.metric_id, RawSample.value).where(RawSample.metric_id.in_(samples))
    ):
        samples[mid].append(value)
    previous: dict[tuple, tuple[float, list[float], str]] = {}
    out = []
    for r in rows:
        median, mid, version, hib = r.median, r.metric_id, r.workload_version, r.higher_is_better
        # Per Ray node, not per hostname: two nodes on one host are two series.
        series = (r.node_id if node or not hardware else r.hardware_class, r.params_hash)
        rec = {
            "trial": r.trial,
            "campaign": r.campaign,
            "started_at": r.started_at.isoformat() if r.started_at else None,
            "node": r.node,
            "node_id": r.node_id,
            "hardware_class": r.hardware_class,
            "params": r.params,
            "param_defaults": (r.workload_meta or {}).get("param_defaults"),
            "workload_version": version,
            "metric": metric,
            "unit": r.unit,
            "median": median,
            "step": None,
            "change_pct": None,
            "p_value": None,
        }
        if series in previous and previous[series][2] != version:
            rec["step"] = "version changed"  # a new convention: not tested against the old
        elif series in previous:
            before_median, before, _ = previous[series]
            change = change_pct(before_median, median, hib) if before_median else 0.0
            p = float(mannwhitneyu(before, samples[mid], alternative="two-sided").pvalue)
            rec.update(change_pct=change, p_value=p)
            if p < alpha and abs(change) >= threshold_pct:
                rec["step"] = "better" if change > 0 else "worse"
        previous[series] = (median, samples[mid], version)
        out.append(rec)
    add_node_labels(out)
    return out
