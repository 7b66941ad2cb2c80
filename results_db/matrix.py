"""Pairwise and per-GPU results as matrices: GPU-to-GPU copies on each node (source rows,
destination columns), node-to-node two-rank trials (rank 0 rows, rank 1 columns), and the
per-GPU trials of a fleet (node rows, GPU columns). Built from query records, so every
filter of ``results query`` applies."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from results_db.closest import did_you_mean
from results_db.errors import QueryError
from results_db.models import Campaign
from results_db.query import Filters, query_records

GPU_PAIRS, NODE_PAIRS, PER_GPU = "gpu pairs", "node pairs", "per GPU"


@dataclass
class Matrix:
    """One matrix of one benchmark's metric medians; a missing cell was not measured."""

    title: str
    kind: str  # GPU_PAIRS, NODE_PAIRS or PER_GPU
    benchmark: str
    metric: str
    unit: str
    higher_is_better: bool
    rows: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    cells: dict[tuple[str, str], float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "kind": self.kind,
            "benchmark": self.benchmark,
            "metric": self.metric,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "rows": self.rows,
            "columns": self.columns,
            "values": [[self.cells.get((r, c)) for c in self.columns] for r in self.rows],
        }


def _kind(r: dict[str, Any]) -> str | None:
    if r.get("gpu_peer") is not None:
        return GPU_PAIRS
    if r.get("gpu") is not None:
        return PER_GPU
    if r.get("ranks") and len({x.get("ray_node_id") for x in r["ranks"]}) == 2:
        return NODE_PAIRS
    return None


def _cell(r: dict[str, Any], kind: str) -> tuple[str, str, str]:
    """(matrix it belongs to within its benchmark, row, column)."""
    if kind == GPU_PAIRS:
        return r["host_label"], f"GPU {r['gpu']}", f"GPU {r['gpu_peer']}"
    if kind == PER_GPU:
        return "", r["host_label"], f"GPU {r['gpu']}"
    # host_label names the ranks' distinct nodes in rank order: rank 0's first.
    first, second = r["host_label"].split(", ")[:2]
    return "", first, second


def matrices(records: list[dict[str, Any]], metric: str | None = None) -> list[Matrix]:
    """Every matrix the records hold, for ``metric`` (default: each trial's primary metric).
    A benchmark swept over params gives one matrix per params, its title naming them."""
    params_of: dict[str, set[str]] = defaultdict(set)
    for r in records:
        params_of[r["benchmark"]].add(repr(sorted(r["params"].items())))
    groups: dict[tuple[str, str, str, str], Matrix] = {}
    values: dict[tuple[str, str, str, str], dict[tuple[str, str], list[float]]] = defaultdict(
        lambda: defaultdict(list)
    )
    metrics_seen = set()
    for r in records:
        kind = _kind(r)
        if kind is None or r.get("metric") is None or r.get("median") is None:
            continue
        metrics_seen.add(r["metric"])
        if r["metric"] != (metric or r.get("primary_metric") or r["metric"]):
            continue
        where, row, col = _cell(r, kind)
        params = repr(sorted(r["params"].items()))
        key = (r["benchmark"], params, where, r["metric"])
        if key not in groups:
            title = " ".join(x for x in (r["benchmark"], where, r["metric"]) if x)
            if len(params_of[r["benchmark"]]) > 1:
                title += " " + ", ".join(f"{k}={v}" for k, v in sorted(r["params"].items()))
            groups[key] = Matrix(
                title, kind, r["benchmark"], r["metric"], r["unit"], bool(r["higher_is_better"])
            )
        values[key][(row, col)].append(r["median"])
    if metric and metric not in metrics_seen and records:
        hint = did_you_mean(metric, sorted(metrics_seen)) or (
            f"; these trials have: {', '.join(sorted(metrics_seen))}" if metrics_seen else ""
        )
        raise QueryError(f"no pairwise or per-GPU trial has metric {metric!r}{hint}")
    out = []
    for key, m in groups.items():
        for cell, vs in values[key].items():
            m.cells[cell] = sorted(vs)[len(vs) // 2]  # latest trials: one value per cell
        m.rows = sorted({r for r, _ in m.cells}, key=_natural)
        m.columns = sorted({c for _, c in m.cells}, key=_natural)
        if m.kind == NODE_PAIRS:  # one axis of nodes, so the diagonal lines up
            m.rows = m.columns = sorted(set(m.rows) | set(m.columns), key=_natural)
        out.append(m)
    return out


def _natural(label: str) -> tuple:
    """GPU 10 after GPU 9."""
    head, _, tail = label.rpartition(" ")
    return (head, int(tail)) if tail.isdigit() else (label, -1)


def campaign_matrices(
    session: Session, campaign: str, benchmark: str | None = None, metric: str | None = None
) -> list[dict[str, Any]]:
    """The matrices of a campaign's latest ok trials (of one benchmark), as plain data."""
    if session.get(Campaign, campaign) is None:
        raise QueryError(f"no campaign {campaign!r} in the store")
    records = query_records(session, Filters(campaign=campaign))
    if benchmark is not None:
        names = sorted({r["benchmark"] for r in records})
        records = [r for r in records if r["benchmark"] == benchmark]
        if not records:
            hint = did_you_mean(benchmark, names) or f"; it has: {', '.join(names)}"
            raise QueryError(f"campaign {campaign} has no benchmark {benchmark!r}{hint}")
    found = matrices(records, metric)
    if not found:
        raise QueryError(
            f"campaign {campaign} has no pairwise or per-GPU trials "
            "(each: gpu, each: gpu_pair, or two-rank trials with each: true)"
        )
    return [m.as_dict() for m in found]
