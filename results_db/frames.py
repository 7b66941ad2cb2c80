"""The results store as pandas DataFrames, for notebooks and exports.

from results_db import frames
df = frames.metrics("sqlite:///results.sqlite", campaign="smoke-...")
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from sqlalchemy import select

from results_db.query import Filters, latest_metrics, query_records, telemetry_query
from results_db.store import ResultStore
from results_db.vocabulary import DISPLAY_ONLY


def _flatten(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Records with ``params`` spread into ``params.<name>`` columns and other nested values
    (labels, ranks) as JSON text, so every column is flat for CSV and Parquet."""
    frame = pd.DataFrame(records).drop(columns=list(DISPLAY_ONLY), errors="ignore")
    if frame.empty:
        return frame
    if "params" in frame:
        params = pd.json_normalize(frame["params"].tolist()).add_prefix("params.")
        frame = pd.concat([frame.drop(columns=["params"]), params], axis=1)
    for column in frame.columns:
        if frame[column].map(lambda v: isinstance(v, (dict, list))).any():
            frame[column] = frame[column].map(lambda v: json.dumps(v) if v is not None else None)
    return frame


def metrics(url: str, **filters: Any) -> pd.DataFrame:
    """One row per (trial, metric): the same records as `harness results query`."""
    store = ResultStore(url, upgrade=False)
    with store.session() as s:
        return _flatten(query_records(s, Filters(**filters)))


def samples(url: str, campaign: str | None = None, workload: str | None = None) -> pd.DataFrame:
    """Every raw per-iteration value: trial, workload, params, node, metric, unit, idx, value."""
    store = ResultStore(url, upgrade=False)
    latest = latest_metrics(samples=True, status=None)
    t = latest.query.subquery()
    q = select(
        t.c.campaign,
        t.c.trial,
        t.c.workload,
        t.c.params,
        t.c.node,
        t.c.node_id,
        t.c.metric,
        t.c.unit,
        t.c.idx,
        t.c.value,
    ).order_by(t.c.trial, t.c.metric, t.c.idx)
    if campaign:
        q = q.where(t.c.campaign == campaign)
    if workload:
        q = q.where(t.c.workload == workload)
    with store.session() as s:
        return _flatten([dict(r._mapping) for r in s.execute(q)])


def telemetry(url: str, campaign: str | None = None) -> pd.DataFrame:
    """Every telemetry sample: campaign, trial, node, source, device, metric, unit, t, value."""
    store = ResultStore(url, upgrade=False)
    with store.session() as s:
        return pd.DataFrame([dict(r._mapping) for r in s.execute(telemetry_query(campaign))])
