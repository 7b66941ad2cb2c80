"""One self-contained HTML report of a campaign (optionally against another): inline CSS and
SVG charts drawn by matplotlib, no scripts, nothing fetched; every stored string is escaped."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from harness.present import charts
from harness.present import serving as serving_report
from harness.present.summary import (
    HEADERS,
    shown_params,
    summary_rows,
    trial_summaries,
    varying_params,
)
from harness.present.visible import html_text as escape
from results_db.peaks import datasheet_peak
from results_db.vocabulary import TrialStatus

CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:8px 0 24px;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}.failed,.timeout{color:#b00}.ok{color:#070}
.chart{margin:8px 16px 24px 0;border:1px solid #eee}h2{margin-top:32px}"""


def _label(r: dict[str, Any], varying: dict[str, set[str]]) -> str:
    """A trial's group label in charts: the params that tell it apart, else the benchmark."""
    return (
        shown_params(r["params"], r.get("param_defaults"), varying.get(r["benchmark"], set()))
        or r["benchmark"]
    )


def _table(header: list[str], rows: list[list[Any]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        f'<tr class="{escape(classes[i]) if classes else ""}">'
        + "".join(f"<td>{escape(str(c))}</td>" for c in row)
        + "</tr>"
        for i, row in enumerate(rows)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render(data: dict[str, Any], other: dict[str, Any] | None = None) -> str:
    """The report page for ``data`` (from results_db.report_data), compared with ``other``."""
    c = data["campaign"]
    records = data["records"]
    summaries = trial_summaries(records, data["contexts"])
    varying = varying_params([(r["benchmark"], r["params"]) for r in records])
    parts = _campaign_header(c) + _nodes_section(data["nodes"])
    parts.append("<h2>Trials</h2>")
    rows = summary_rows(summaries, lambda r: r["node_label"])
    parts.append(_table(HEADERS, rows, [t["status"] for t in summaries]))

    ok = [
        t["record"]
        for t in summaries
        if t["status"] == TrialStatus.OK and t["record"]["median"] is not None
    ]
    parts.append("<h2>Across nodes" + (" and campaigns" if other else "") + "</h2>")
    parts += _cross_bars(ok, varying, other)
    parts.append("<h2>Size sweeps</h2>")
    parts += _sweeps(ok, varying)
    parts.append("<h2>Roofline</h2>")
    parts += _rooflines(ok, data)
    parts.append("<h2>Serving</h2>")
    ok_records = [r for r in records if r["status"] == TrialStatus.OK]
    parts += serving_report.section(ok_records, data["contexts"], _table)
    parts.append("<h2>Fleet health</h2>")
    parts += _health(data.get("health") or [], varying)
    parts += _control(data.get("control") or [], varying)
    parts.append("<h2>Matrices</h2>")
    parts += _matrices(ok)
    parts.append("<h2>Telemetry</h2>")
    parts += _telemetry(data["telemetry"])
    title = escape(f"harness report: {c['name']} {c['id']}")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}'
        f"</title><style>{CSS}</style></head><body>{''.join(parts)}</body></html>"
    )


def _campaign_header(c: dict[str, Any]) -> list[str]:
    """The campaign's name, description and one row of what it ran with."""
    return [
        f"<h1>{escape(c['name'])} <small>{escape(c['id'])}</small></h1>",
        f"<p>{escape(c['description'])}</p>",
        _table(
            ["status", "created", "harness", "playbook sha256", "cluster", "user"],
            [
                [
                    c["status"],
                    c["created_at"],
                    c["harness_version"],
                    c["playbook_hash"][:16],
                    c["cluster"],
                    c["user"],
                ]
            ],
        ),
    ]


def _nodes_section(nodes: list[dict[str, Any]]) -> list[str]:
    """The table of the campaign's nodes: hardware, software and labels."""
    return [
        "<h2>Nodes</h2>",
        _table(
            [
                "node",
                "hostname",
                "cpu",
                "threads",
                "memory GiB",
                "gpus",
                "torch",
                "cuda",
                "driver",
                "labels",
            ],
            [
                [
                    n["ray_node_id"][:8],
                    n["hostname"],
                    n["cpu_model"],
                    n["cpu_threads"],
                    f"{(n['memory_bytes'] or 0) / 2**30:.1f}",
                    f"{n['gpu_count']} {n['gpu_model']}",
                    n["torch"],
                    n["cuda"],
                    n["driver"],
                    " ".join(f"{k}={v}" for k, v in (n["labels"] or {}).items()),
                ]
                for n in nodes
            ],
        ),
    ]


def _point(r: dict[str, Any]) -> charts.Point:
    return charts.Point(r["median"], r.get("ci_low"), r.get("ci_high"))


def _cross_bars(
    ok: list[dict[str, Any]], varying: dict[str, set[str]], other: dict[str, Any] | None
) -> list[str]:
    """Bars per (benchmark, params): one bar per node (co-located nodes and each pair of a
    multi-rank trial apart), or per campaign with --compare; 95% CI error bars."""
    groups: dict[tuple[str, str, str], dict[str, dict[str, charts.Point]]] = defaultdict(dict)
    for r in ok:
        series = r["campaign"] if other else r["node_label"]
        key = (r["workload"], r["metric"], r["unit"])
        groups[key].setdefault(_label(r, varying), {})[series] = _point(r)
    if other:
        for t in trial_summaries(other["records"], other["contexts"]):
            r = t["record"]
            if r["status"] == TrialStatus.OK and r["median"] is not None:
                key, group = (r["workload"], r["metric"], r["unit"]), _label(r, varying)
                if key in groups and group in groups[key]:
                    groups[key][group][r["campaign"]] = _point(r)
    out = [
        charts.bars(f"{wl} {metric}", dict(list(g.items())[:16]), unit)
        for (wl, metric, unit), g in groups.items()
        if other or any(len(bars) > 1 for bars in g.values())
    ]
    return out or ["<p>Every benchmark ran on one node: nothing to set side by side.</p>"]


def _tied(records: list[dict[str, Any]], size: str) -> set[str]:
    """Params that move in lockstep with ``size`` (zipped shapes): not separate series."""
    values: dict[str, dict[Any, set[str]]] = defaultdict(lambda: defaultdict(set))
    for r in records:
        for k, v in r["params"].items():
            values[k][repr(r["params"].get(size))].add(repr(v))
    return {k for k, by_size in values.items() if all(len(vs) == 1 for vs in by_size.values())}


def _sweeps(ok: list[dict[str, Any]], varying: dict[str, set[str]]) -> list[str]:
    """A line per node (and per other varying parameter) against the swept size."""
    lines: dict[tuple[str, str, str, str], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in ok:
        size = next((k for k in r["sweep_params"] if k in varying[r["benchmark"]]), None)
        if size is None or not isinstance(r["params"].get(size), (int, float)):
            continue
        same = [x for x in ok if x["benchmark"] == r["benchmark"]]
        loose = varying[r["benchmark"]] - {size} - _tied(same, size)
        others = " ".join(f"{k}={v}" for k, v in r["params"].items() if k in loose)
        label = f"{r['node_label']} {others}".strip()
        lines[(r["benchmark"], size, r["metric"], r["unit"])][label].append(
            (float(r["params"][size]), _point(r))
        )
    out = [
        charts.lines(f"{bench}: {metric} against {size}", dict(series), size, unit)
        for (bench, size, metric, unit), series in lines.items()
    ]
    return out or ["<p>No benchmark swept a size.</p>"]


def _rooflines(ok: list[dict[str, Any]], data: dict[str, Any]) -> list[str]:
    """Each matmul-bound trial at its arithmetic intensity under its node's roofline."""
    groups: dict[tuple[str, str, str], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    models = {}
    varying = varying_params([(r["benchmark"], r["params"]) for r in ok])
    for r in ok:
        ctx = data["contexts"].get(r["trial"]) or {}
        key = r["peak_key"]
        if not key or not ctx.get("compulsory_bytes") or not ctx.get("flops_per_iteration"):
            continue
        intensity = ctx["flops_per_iteration"] / ctx["compulsory_bytes"]
        groups[(r["hardware_class"], key, r["gpu_model"] or r["cpu_model"] or "")][
            r["workload"]
        ].append((intensity, r["median"], _label(r, varying)))
        models[r["hardware_class"]] = r["gpu_model"]
    out = []
    for (hw, key, model), points in groups.items():
        device = key.split(":")[1]
        peak = data["ceilings"].get(f"{hw}|{key}")
        bw = data["ceilings"].get(f"{hw}|bandwidth:{device}")
        source = "measured"
        if peak is None or bw is None:
            p, b = (
                datasheet_peak(models.get(hw), key),
                datasheet_peak(models.get(hw), f"bandwidth:{device}"),
            )
            peak, bw, source = (p[0], b[0], p[1]) if p and b else (None, None, "")
        if peak and bw:
            out.append(charts.roofline(f"{model} {key}", dict(points), peak, bw, source))
        else:
            out.append(
                f"<p>{escape(model)} {escape(key)}: no measured ceiling or datasheet peak "
                "(run playbooks/calibrate.yaml).</p>"
            )
    return out or ["<p>No matmul-bound trial to place.</p>"]


def _health(verdicts: list[dict[str, Any]], varying: dict[str, set[str]]) -> list[str]:
    """A heatmap of nodes (or GPUs) x benchmarks, each cell the trial's distance from its
    class centre in MADs, signed so that worse is negative (red), with its % and verdict."""
    judged = [v for v in verdicts if v["class_centre"] is not None]
    if not judged:
        return [
            "<p>No class reference yet: a key needs two other trials of the same hardware "
            "class (earlier campaigns or this campaign's other nodes).</p>"
        ]
    column_of = [_health_column(v, varying) for v in judged]
    rows = sorted({v["node_label"] for v in judged})
    columns = list(dict.fromkeys(column_of))
    row_at = {r: i for i, r in enumerate(rows)}  # 1,000 nodes: no list search per cell
    column_at = {c: j for j, c in enumerate(columns)}
    values: list[list[float | None]] = [[None] * len(columns) for _ in rows]
    notes = [[""] * len(columns) for _ in rows]
    for v, column in zip(judged, column_of, strict=True):
        i, j = row_at[v["node_label"]], column_at[column]
        sign = 1.0 if v["higher_is_better"] else -1.0
        if v["off_spreads"] is not None:
            values[i][j] = sign * v["off_spreads"]
        elif v["off_pct"]:  # no spread among the references: place it by its sign alone
            values[i][j] = 6.0 * sign * math.copysign(1.0, v["off_pct"])
        notes[i][j] = f"{v['off_pct'] or 0.0:+.1f}%" + (" !" if v["failed"] else "")
    failing = sum(v["failed"] for v in verdicts)
    chart = charts.heatmap(
        f"distance from the class reference ({failing} out of bounds, marked !)",
        rows,
        columns,
        values,
        notes,
        diverging=True,
        colour_label="MADs from the class centre (negative: worse)",
    )
    return [f"<p>As <code>harness check</code> judges it: k={judged[0]['k']:.2f}.</p>", chart]


def _health_column(v: dict[str, Any], varying: dict[str, set[str]]) -> str:
    """A benchmark's column: its name, the params its trials differ in, and the metric."""
    params = " ".join(f"{k}={v['params'].get(k)}" for k in sorted(varying.get(v["benchmark"], ())))
    return " ".join(x for x in (v["benchmark"], params, v["metric"]) if x)


def _control(history: list[dict[str, Any]], varying: dict[str, set[str]]) -> list[str]:
    """Control charts of the keys furthest off: every stored trial of the key on its class,
    the centre line and the control limits the check used."""
    out = []
    for h in history:
        if len(h["points"]) < 2:
            continue
        title = f"{_health_column(h, varying)} on class {h['hardware_class'][:8]}"
        out.append(
            charts.control(
                " ".join(title.split()),
                h["points"],
                h["centre"],
                h["limit"],
                h["unit"],
                h.get("spreads", ()),
                h.get("transient", ()),
            )
        )
    return out


def _matrices(ok: list[dict[str, Any]]) -> list[str]:
    """GPU-to-GPU, node-to-node and node x GPU results as heatmaps."""
    from results_db.matrix import matrices

    found = matrices(ok)
    if not found:
        return ["<p>No pairwise or per-GPU trials (each: gpu, each: gpu_pair, two-rank each).</p>"]
    out = []
    for m in found:
        values = [[m.cells.get((r, c)) for c in m.columns] for r in m.rows]
        notes = [["" if v is None else f"{v:.4g}" for v in row] for row in values]
        title = f"{m.title} [{m.unit}]"
        out.append(
            charts.heatmap(
                title, m.rows, m.columns, values, notes, diverging=False, colour_label=m.unit
            )
        )
    return out


def _telemetry(samples: list[dict[str, Any]]) -> list[str]:
    """Per node and metric, every source's samples over the campaign, trial windows shaded."""
    if not samples:
        return ["<p>No telemetry was recorded.</p>"]
    t0 = min(s["t"] for s in samples)
    series: dict[tuple[str, str, str], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    windows: dict[str, dict[int, list[float]]] = defaultdict(dict)
    for s in samples:
        span = windows[s["node"]].setdefault(s["trial"], [math.inf, -math.inf])
        span[0], span[1] = min(span[0], s["t"] - t0), max(span[1], s["t"] - t0)
        if s["metric"] == "cpu_util" and s["device"] != "cpu":
            continue  # per-core utilisation stays in the data, not the page
        series[(s["node"], s["metric"], s["unit"])][f"{s['source']}:{s['device']}"].append(
            (s["t"] - t0, s["value"])
        )
    return [
        charts.timeline(
            f"{node} {metric}",
            dict(lines),
            unit,
            [(f"#{tid}", lo, hi) for tid, (lo, hi) in sorted(windows[node].items())],
        )
        for (node, metric, unit), lines in sorted(series.items())
    ]
