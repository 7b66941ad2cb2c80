"""One line per trial, as `results show` and the HTML report present it."""

from __future__ import annotations

from typing import Any

from harness.energy import EFFICIENCY
from harness.output import fmt_params

EFFICIENCY_METRICS = {name for name, _, _ in EFFICIENCY.values()}


def shown_params(workload: str, params: dict[str, Any], varying: set[str] = frozenset()) -> str:
    """The params that differ from the workload's defaults or vary among the rows shown."""
    from workloads import UnknownWorkload, get_workload

    try:
        fields = get_workload(workload).Params.model_fields
    except UnknownWorkload:
        return fmt_params(params)
    return fmt_params(
        {
            k: v
            for k, v in params.items()
            if k in varying or k not in fields or fields[k].is_required() or fields[k].default != v
        }
    )


def varying_params(rows: list[tuple[str, dict[str, Any]]]) -> dict[str, set[str]]:
    """For each benchmark, the param names whose value differs between its rows."""
    values: dict[str, dict[str, set[str]]] = {}
    for benchmark, params in rows:
        for k, v in params.items():
            values.setdefault(benchmark, {}).setdefault(k, set()).add(repr(v))
    return {b: {k for k, vs in kv.items() if len(vs) > 1} for b, kv in values.items()}


def primary_metric(workload: str, available: list[str]) -> str | None:
    """The workload's declared primary metric where present, else the first available."""
    from workloads import UnknownWorkload, get_workload

    try:
        wanted = get_workload(workload).primary_metric
    except UnknownWorkload:
        wanted = None
    if wanted in available:
        return wanted
    return available[0] if available else None


def trial_summaries(
    records: list[dict[str, Any]], contexts: dict[int, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per trial (in order): its primary record and the display texts of a summary row."""
    by_trial: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        by_trial.setdefault(r["trial"], []).append(r)
    varying = varying_params(
        [(recs[0]["benchmark"], recs[0]["params"]) for recs in by_trial.values()]
    )
    out = []
    for tid, recs in by_trial.items():
        metric = primary_metric(recs[0]["workload"], [r["metric"] for r in recs if r["metric"]])
        r = next((x for x in recs if x["metric"] == metric), recs[0])
        eff = next((x for x in recs if x["metric"] in EFFICIENCY_METRICS), None)
        ok = r["status"] == "ok" and r["median"] is not None
        if ok:
            detail = f"n={r['n']} cv={100 * (r['cv'] or 0):.1f}% {r['stop_reason']}"
            if (contexts.get(tid) or {}).get("throttled"):
                detail += " THROTTLED"
        else:
            detail = f"{r['failure_phase']}: {r['failure_reason']}"
        out.append(
            {
                "trial": tid,
                "record": r,
                "benchmark": r["benchmark"],
                "params": shown_params(r["workload"], r["params"], varying[r["benchmark"]]),
                "status": r["status"],
                "metric": r["metric"] or "",
                "median": f"{r['median']:.4g} {r['unit']}" if ok else "",
                "ci": f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}]" if ok else "",
                "peak": " ".join(
                    f"{r[k]:.0f}% {label}"
                    for k, label in (("pct_of_ceiling", "ceil"), ("pct_of_datasheet", "spec"))
                    if r.get(k) is not None
                ),
                "efficiency": f"{eff['median']:.4g} {eff['unit']}" if eff else "",
                "detail": detail,
            }
        )
    return out


COLUMNS = (
    "trial",
    "benchmark",
    "params",
    "node",
    "status",
    "metric",
    "median",
    "ci",
    "peak",
    "efficiency",
    "detail",
)
HEADERS = [{"ci": "95% CI", "peak": "of peak"}.get(c, c) for c in COLUMNS]


def summary_rows(summaries: list[dict[str, Any]], node_label: Any) -> list[list[Any]]:
    """Table rows in COLUMNS order; ``node_label(record)`` says how to name the node."""
    return [[node_label(t["record"]) if c == "node" else t[c] for c in COLUMNS] for t in summaries]
