"""One line per trial, as `results show` and the HTML report present it."""

from __future__ import annotations

from typing import Any

from harness.present.output import fmt_params
from results_db.vocabulary import EFFICIENCY, TrialStatus

EFFICIENCY_METRICS = {name for name, _, _ in EFFICIENCY.values()}


def shown_params(
    params: dict[str, Any],
    defaults: dict[str, Any] | None,
    varying: set[str] = frozenset(),
) -> str:
    """The params that differ from the workload's declared defaults (stored with each trial)
    or vary among the rows shown, then how many were left out at their default (never hidden
    silently; --wide shows them); every param where the defaults are not known."""
    if defaults is None:
        return fmt_params(params)
    shown = {
        k: v for k, v in params.items() if k in varying or k not in defaults or defaults[k] != v
    }
    hidden = sum(1 for k, v in params.items() if k not in shown and v is not None)
    text = fmt_params(shown)
    if hidden:
        text += f"{' ' if text else ''}(+{hidden} default{'s' if hidden > 1 else ''})"
    return text


def varying_params(rows: list[tuple[str, dict[str, Any]]]) -> dict[str, set[str]]:
    """For each benchmark, the param names whose value differs between its rows."""
    values: dict[str, dict[str, set[str]]] = {}
    for benchmark, params in rows:
        for k, v in params.items():
            values.setdefault(benchmark, {}).setdefault(k, set()).add(repr(v))
    return {b: {k for k, vs in kv.items() if len(vs) > 1} for b, kv in values.items()}


def primary_metric(record: dict[str, Any], available: list[str]) -> str | None:
    """The primary metric the trial's workload declared where present, else the first."""
    wanted = record.get("primary_metric")
    if wanted in available:
        return wanted
    return available[0] if available else None


def detail_parts(
    r: dict[str, Any], recs: list[dict[str, Any]], context: dict[str, Any]
) -> list[str]:
    """Beside a trial's primary figure: the percentiles of the metrics its workload names
    (``ttft p50 12.1 p90 14 p99 30 ms``), and failed requests by kind."""
    parts = []
    by_name = {x["metric"]: x for x in recs if x["metric"] and x["median"] is not None}
    for name in r.get("detail_metrics") or ():
        x = by_name.get(name)
        if x is not None:
            tails = " ".join(
                f"{label} {x[k]:.3g}"
                for k, label in (("median", "p50"), ("p90", "p90"), ("p99", "p99"))
                if x.get(k) is not None
            )
            parts.append(f"{name} {tails} {x['unit']}")
    errors = context.get("errors_by_kind") or {}
    if errors:
        parts.append("errors " + " ".join(f"{kind}x{n}" for kind, n in errors.items()))
    return parts


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
        metric = primary_metric(recs[0], [r["metric"] for r in recs if r["metric"]])
        r = next((x for x in recs if x["metric"] == metric), recs[0])
        eff = next((x for x in recs if x["metric"] in EFFICIENCY_METRICS), None)
        ok = r["status"] == TrialStatus.OK and r["median"] is not None
        if ok:
            spread = f" cv={100 * (r['cv'] or 0):.1f}%" if r["n"] > 1 else ""
            detail = f"n={r['n']}{spread} {r['stop_reason']}"
            context = contexts.get(tid) or {}
            if context.get("throttled"):
                detail += " THROTTLED"
            if context.get("cpu_throttled"):
                share = context.get("cpu_throttled_share", 0)
                detail += f" CPU-THROTTLED (cgroup quota: held in {100 * share:.0f}% of periods)"
            if context.get("retransmits"):
                shares = context.get("tcp_retransmit_share_by_host") or {
                    "host": context.get("tcp_retransmit_share", 0)
                }
                resent = ", ".join(f"{h} {100 * v:.1f}%" for h, v in shares.items())
                detail += f" RETRANSMITS (TCP segments resent: {resent})"
            if context.get("client_bound"):
                detail += " CLIENT-BOUND (" + "; ".join(context["client_bound_reasons"]) + ")"
            detail = "; ".join([detail, *detail_parts(r, recs, context)])
        else:
            detail = f"{r['failure_phase']}: {r['failure_reason']}"
        out.append(
            {
                "trial": tid,
                "record": r,
                "benchmark": r["benchmark"],
                "params": shown_params(
                    r["params"], r.get("param_defaults"), varying[r["benchmark"]]
                ),
                "status": r["status"],
                "metric": r["metric"] or "",
                "median": f"{r['median']:.4g} {r['unit']}" if ok else "",
                # One sample (a load run) has no interval: [x, x] would claim one.
                "ci": f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}]" if ok and r["n"] > 1 else "",
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


def summary_rows(
    summaries: list[dict[str, Any]], node_label: Any, *, wide: bool = False
) -> list[list[Any]]:
    """Table rows in COLUMNS order; ``node_label(record)`` says how to name the node;
    ``wide`` shows every parameter, defaults included."""

    def value(t: dict[str, Any], c: str) -> Any:
        if c == "node":
            return node_label(t["record"])
        if c == "params" and wide:
            return fmt_params(t["record"]["params"])
        return t[c]

    return [[value(t, c) for c in COLUMNS] for t in summaries]
