"""The report's serving section: throughput against latency for each configuration, the
Pareto frontier of throughput against interactivity, and the percentile table of every
load point (vLLM's definitions; see workloads/inference_serving.py)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from harness.present import charts
from harness.present.output import fmt_params

LOAD_PARAMS = ("rate", "concurrency")  # what a load sweep varies within one configuration
TABLE_HEADER = [
    "configuration",
    "load",
    "output tok/s",
    "tok/s/user",
    "TTFT p50/p90/p99 ms",
    "TPOT p50/p90/p99 ms",
    "ITL p50/p99 ms",
    "E2E p50/p99 ms",
    "errors",
    "cost/Mtok",
]


def load_points(
    records: list[dict[str, Any]], contexts: dict[int, dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """One point per ok serving trial (a workload naming ttft among its detail metrics):
    its configuration (params but the load), its load, and its metric records by name;
    ``gpus``: the endpoint hosts' GPUs where `server_on` named them (else None)."""
    by_trial: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in records:
        if r.get("median") is not None and "ttft" in (r.get("detail_metrics") or ()):
            by_trial[r["trial"]][r["metric"]] = r
    points = []
    for metrics in by_trial.values():
        first = next(iter(metrics.values()))
        if "output_throughput" not in metrics or "tpot" not in metrics:
            continue
        params = first["params"]
        config = {k: v for k, v in params.items() if k not in LOAD_PARAMS}
        load = {k: params.get(k) for k in LOAD_PARAMS if params.get(k) is not None}
        tpot = metrics["tpot"]["median"]
        gpus = ((contexts or {}).get(first["trial"]) or {}).get("server_gpus") or None
        points.append(
            {
                "benchmark": first["benchmark"],
                "config_params": config,
                "load": fmt_params(load) or "-",
                "load_value": next(iter(load.values()), 0.0),
                "throughput": metrics["output_throughput"]["median"],
                "interactivity": 1000.0 / tpot if tpot else None,  # tokens/s per user
                "gpus": gpus,
                "metrics": metrics,
            }
        )
    _name_configs(points)
    return sorted(points, key=lambda p: (p["config"], p["load_value"]))


def _name_configs(points: list[dict[str, Any]]) -> None:
    """A configuration is a benchmark and its params but the load (the client's node does
    not make one: a sweep's steps may run from different nodes); named by the benchmark and
    the params that differ between its configurations."""
    differing: dict[str, set[str]] = defaultdict(set)
    seen: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for p in points:
        for k, v in p["config_params"].items():
            seen[p["benchmark"]][k].add(repr(v))
    for bench, values in seen.items():
        differing[bench] = {k for k, vs in values.items() if len(vs) > 1}
    for p in points:
        shown = {k: v for k, v in p["config_params"].items() if k in differing[p["benchmark"]]}
        p["config"] = " ".join(x for x in (p["benchmark"], fmt_params(shown)) if x)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both axes (higher is better on each), by x."""
    front: list[tuple[float, float]] = []
    best_y = float("-inf")
    for x, y in sorted(points, key=lambda p: (-p[0], -p[1])):
        if y > best_y:
            front.append((x, y))
            best_y = y
    return sorted(front)


def matched_energy(points: list[dict[str, Any]]) -> tuple[float, dict[str, float]] | None:
    """Energy per token of each configuration at one interactivity (tokens/s per user) all
    of them reach: the highest such, each configuration's figure interpolated linearly
    between its two nearest load points. None unless two configurations have energy at two
    load points or more (one figure per configuration would compare different loads)."""
    series: dict[str, list[tuple[float, float]]] = {}
    for p in points:
        energy = p["metrics"].get("energy_per_token")
        if energy is not None and p["interactivity"]:
            series.setdefault(p["config"], []).append((p["interactivity"], energy["median"]))
    series = {c: sorted(v) for c, v in series.items() if len(v) >= 2}
    if len(series) < 2:
        return None
    low = max(v[0][0] for v in series.values())
    high = min(v[-1][0] for v in series.values())
    if low > high:
        return None  # no interactivity every configuration reaches
    out = {}
    for config, pts in series.items():
        for (x0, y0), (x1, y1) in itertools.pairwise(pts):
            if x0 <= high <= x1:
                out[config] = y0 + (y1 - y0) * (high - x0) / (x1 - x0) if x1 > x0 else y0
                break
    return high, out


def _tails(m: dict[str, Any] | None, keys: tuple[str, ...]) -> str:
    if m is None:
        return ""
    return "/".join(f"{m[k]:.3g}" if m.get(k) is not None else "-" for k in keys)


def section(
    records: list[dict[str, Any]],
    contexts: dict[int, dict[str, Any]],
    table: Callable[[list[str], list[list[Any]]], str],
) -> list[str]:
    """The serving section's HTML parts (charts, and the percentile table drawn by
    ``table``), or one line when no trial of the campaign is a serving load run."""
    points = load_points(records, contexts)
    if not points:
        return ["<p>No serving load runs in this campaign.</p>"]
    configs = list(dict.fromkeys(p["config"] for p in points))
    parts = []
    for metric, label in (("ttft", "TTFT"), ("tpot", "TPOT")):
        series: dict[str, list[tuple[float, float]]] = {}
        for c in configs:
            for key, tag in (("median", "p50"), ("p99", "p99")):
                pts = [
                    (p["throughput"], p["metrics"][metric][key])
                    for p in points
                    if p["config"] == c
                    and metric in p["metrics"]
                    and p["metrics"][metric].get(key) is not None
                ]
                if pts:
                    series[f"{c} {tag}"] = pts
        parts.append(
            charts.xy(
                f"{label} against output throughput, one point per load",
                series,
                "output throughput (tokens/s)",
                f"{label} (ms)",
            )
        )
    # Per GPU when every point knows its endpoint's GPUs (server_on), else per endpoint.
    per_gpu = all(p["gpus"] for p in points)
    pareto = {
        c: [
            (p["interactivity"], p["throughput"] / (p["gpus"] if per_gpu else 1))
            for p in points
            if p["config"] == c and p["interactivity"]
        ]
        for c in configs
    }
    every = [xy for pts in pareto.values() for xy in pts]
    parts.append(
        charts.xy(
            "throughput against interactivity (Pareto frontier: no point beats it on both)",
            pareto,
            "tokens/s per user (1000 / TPOT p50)",
            "output tokens/s per GPU" if per_gpu else "output tokens/s (per endpoint)",
            frontier=pareto_front(every),
            log_x=False,
        )
    )
    rows = []
    for p in points:
        m = p["metrics"]
        errors = (contexts.get(next(iter(m.values()))["trial"]) or {}).get("errors_by_kind") or {}
        rows.append(
            [
                p["config"],
                p["load"],
                f"{p['throughput']:.4g}",
                f"{p['interactivity']:.3g}" if p["interactivity"] else "",
                _tails(m.get("ttft"), ("median", "p90", "p99")),
                _tails(m.get("tpot"), ("median", "p90", "p99")),
                _tails(m.get("itl"), ("median", "p99")),
                _tails(m.get("e2e_latency"), ("median", "p99")),
                " ".join(f"{k}x{v}" for k, v in errors.items()) or "0",
                f"{m['cost_per_mtok']['median']:.4g} {m['cost_per_mtok']['unit'].split('/')[0]}"
                if "cost_per_mtok" in m
                else "",
            ]
        )
    parts.append(table(TABLE_HEADER, rows))
    matched = matched_energy(points)
    if matched is not None:
        at, figures = matched
        parts.append(
            f"<p>Energy per token at the same interactivity, {at:.3g} tokens/s per user "
            "(interpolated between each configuration's load points):</p>"
        )
        parts.append(
            table(["configuration", "J/token"], [[c, f"{v:.4g}"] for c, v in figures.items()])
        )
    return parts
