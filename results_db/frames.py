"""The results store as pandas DataFrames, for notebooks and exports.

from results_db import frames
df = frames.metrics("sqlite:///results.sqlite", campaign="smoke-...")
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from sqlalchemy import select

from results_db.models import TelemetrySample
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


def _trial_ids(session: Any, filters: Filters) -> list[int]:
    """The trials ``results query`` selects with ``filters`` (typos refused the same way)."""
    return sorted({r["trial"] for r in query_records(session, filters)})


def samples(url: str, **filters: Any) -> pd.DataFrame:
    """Every raw per-iteration value of the trials and metrics ``filters`` select (the
    filters of `harness results query`): trial, workload, params, node, metric, unit, idx,
    value."""
    f = Filters(**filters)
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
    if f.metrics:
        q = q.where(t.c.metric.in_(f.metrics))
    with store.session() as s:
        q = q.where(t.c.trial.in_(_trial_ids(s, f)))
        return _flatten([dict(r._mapping) for r in s.execute(q)])


def telemetry(url: str, **filters: Any) -> pd.DataFrame:
    """Every telemetry sample of the trials ``filters`` select (those of `harness results
    query`, metrics aside): campaign, trial, node, source, device, metric, unit, t, value."""
    f = Filters(**filters)
    f.metrics = []  # a metric filter names trial metrics, not telemetry series
    store = ResultStore(url, upgrade=False)
    with store.session() as s:
        ids = _trial_ids(s, f)
        q = telemetry_query(f.campaign).where(TelemetrySample.trial_id.in_(ids))
        return pd.DataFrame([dict(r._mapping) for r in s.execute(q)])
