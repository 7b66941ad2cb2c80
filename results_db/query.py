"""The read side: campaigns, trials and flat metric records for scripts and tables."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Select, and_, func, select
from sqlalchemy.orm import Session, aliased

from results_db.errors import QueryError as QueryError
from results_db.heartbeat import shown_status
from results_db.models import (
    Campaign,
    CampaignNode,
    Ceiling,
    Metric,
    Node,
    RawSample,
    TelemetrySample,
    Trial,
)
from results_db.peaks import datasheet_peak
from results_db.suggest import unknown_filter
from results_db.vocabulary import STATISTICS, STATUSES, TrialStatus, gpu_suffix

# Node columns a --where filter may name as ``node.<field>``.
NODE_FIELDS = (
    "hostname",
    "hardware_class",
    "fingerprint",
    "cpu_model",
    "cpu_cores",
    "cpu_threads",
    "memory_bytes",
    "gpu_count",
    "gpu_model",
    "os",
    "python",
    "torch",
    "cuda",
    "driver",
)


@dataclass
class Filters:
    """What ``results query`` selects. ``status=None`` means every status."""

    campaign: str | None = None
    workload: str | None = None
    metrics: list[str] = field(default_factory=list)
    status: str | None = TrialStatus.OK.value
    where: list[tuple[str, Any]] = field(default_factory=list)
    all_attempts: bool = False
    since: datetime | None = None  # trials started at or after
    until: datetime | None = None  # trials started before


def list_campaigns(session: Session) -> list[dict[str, Any]]:
    """Every campaign, newest first, with its trial counts by status (latest attempts)."""
    latest = latest_trials().subquery()
    counts = dict.fromkeys(STATUSES, 0)
    by_campaign: dict[str, dict[str, int]] = {}
    for cid, status, n in session.execute(
        select(latest.c.campaign_id, latest.c.status, func.count()).group_by(
            latest.c.campaign_id, latest.c.status
        )
    ):
        by_campaign.setdefault(cid, dict(counts))[status] = n
    out = []
    now = datetime.now(timezone.utc)
    for c in session.scalars(select(Campaign).order_by(Campaign.created_at.desc())):
        n = by_campaign.get(c.id, dict(counts))
        out.append(
            {
                "campaign": c.id,
                "name": c.name,
                "status": shown_status(c, now),
                "created_at": c.created_at.isoformat() if c.created_at else None,
                "finished_at": c.finished_at.isoformat() if c.finished_at else None,
                "heartbeat_at": c.heartbeat_at.isoformat() if c.heartbeat_at else None,
                "trials": sum(n.values()),
                **{f"trials_{k}": v for k, v in n.items()},
                "playbook_hash": c.playbook_hash,
                "cluster": c.cluster,
                "harness_version": c.harness_version,
            }
        )
    return out


def trial_contexts(session: Session, campaign: str) -> dict[int, dict[str, Any]]:
    """Each trial's context (flags like straggler or throttled) of a campaign, by trial id."""
    q = select(Trial.id, Trial.context).where(Trial.campaign_id == campaign)
    return {tid: context or {} for tid, context in session.execute(q)}


def measured_ceilings(session: Session) -> dict[tuple[str, str], Ceiling]:
    """The newest measured ceiling per (hardware class, key)."""
    out: dict[tuple[str, str], Ceiling] = {}
    for c in session.scalars(select(Ceiling).order_by(Ceiling.measured_at)):
        out[(c.hardware_class, c.key)] = c
    return out


def add_peaks(rec: dict[str, Any], ceilings: dict[tuple[str, str], Ceiling]) -> None:
    """Percent of the measured ceiling and of the datasheet peak, where either applies."""
    key = rec["peak_key"]
    rec["pct_of_ceiling"] = rec["pct_of_datasheet"] = rec["datasheet_sku"] = None
    if key is None or rec["median"] is None:
        return
    ceiling = ceilings.get((rec["hardware_class"], key))
    if ceiling is not None and ceiling.value > 0:
        rec["pct_of_ceiling"] = 100.0 * rec["median"] / ceiling.value
    sheet = datasheet_peak(rec["gpu_model"], key)
    if sheet is not None:
        rec["pct_of_datasheet"] = 100.0 * rec["median"] / sheet[0]
        rec["datasheet_sku"] = sheet[1]


def list_ceilings(session: Session) -> list[dict[str, Any]]:
    """Every measured ceiling with the datasheet peak beside it where known."""
    out = []
    rows = session.execute(
        select(Ceiling, Node.gpu_model, Node.cpu_model, Node.hostname)
        .join(Trial, Trial.id == Ceiling.trial_id)
        .outerjoin(Node, Node.id == Trial.node_id)
        .order_by(Ceiling.hardware_class, Ceiling.key, Ceiling.measured_at)
    )
    for c, gpu_model, cpu_model, hostname in rows:
        sheet = datasheet_peak(gpu_model, c.key)
        out.append(
            {
                "hardware_class": c.hardware_class,
                "key": c.key,
                "value": c.value,
                "unit": c.unit,
                "campaign": c.campaign_id,
                "trial": c.trial_id,
                "node": hostname,
                "gpu_model": gpu_model,
                "cpu_model": cpu_model,
                "measured_at": c.measured_at.isoformat() if c.measured_at else None,
                "datasheet": sheet[0] if sheet else None,
                "datasheet_sku": sheet[1] if sheet else None,
                "pct_of_datasheet": 100.0 * c.value / sheet[0] if sheet else None,
            }
        )
    return out


def latest_trials() -> Select:
    """Trials that are the latest attempt of their key in their campaign."""
    newer = aliased(Trial)
    return select(Trial).where(
        ~select(newer.id)
        .where(
            newer.campaign_id == Trial.campaign_id,
            newer.trial_key == Trial.trial_key,
            newer.attempt > Trial.attempt,
        )
        .exists()
    )


@dataclass(frozen=True)
class LatestMetrics:
    """The select of latest trial attempts x their metrics (x raw samples), with ``trials``,
    the subquery its trial columns come from, for callers' filters (``trials.c.workload``)."""

    query: Select
    trials: Any


def latest_metrics(*, samples: bool, status: str | None = TrialStatus.OK.value) -> LatestMetrics:
    """Latest attempts x metrics, and with ``samples`` x raw samples: the one query behind
    compare, history and the sample frames. Columns are labelled: trial, campaign, trial_key,
    workload, params, params_hash, workload_version, workload_meta, primary_metric,
    started_at, node_id,
    node, hardware_class, metric_id, metric, unit, higher_is_better, median (and idx, value)."""
    t = latest_trials().subquery()
    columns = [
        t.c.id.label("trial"),
        t.c.campaign_id.label("campaign"),
        t.c.trial_key,
        t.c.workload,
        t.c.params,
        t.c.params_hash,
        t.c.workload_version,
        t.c.workload_meta,
        t.c.primary_metric,
        t.c.started_at,
        t.c.ray_node_id.label("node_id"),
        Node.hostname.label("node"),
        Node.hardware_class,
        Metric.id.label("metric_id"),
        Metric.name.label("metric"),
        Metric.unit,
        Metric.higher_is_better,
        Metric.median,
    ]
    if samples:
        columns += [RawSample.idx, RawSample.value]
    q = select(*columns).join(Metric, Metric.trial_id == t.c.id)
    if samples:
        q = q.join(RawSample, RawSample.metric_id == Metric.id)
    q = q.outerjoin(Node, Node.id == t.c.node_id)
    if status:
        q = q.where(t.c.status == status)
    return LatestMetrics(q, t)


def value_clause(column: Any, value: Any) -> Any:
    """Compare a column (or JSON element accessor) with a typed value; * globs with LIKE."""
    if isinstance(value, bool):
        return column.as_boolean() == value if hasattr(column, "as_boolean") else column == value
    if isinstance(value, (int, float)):
        return column.as_float() == float(value) if hasattr(column, "as_float") else column == value
    text = str(value)
    col = column.as_string() if hasattr(column, "as_string") else column
    if "*" in text or "?" in text:
        return col.like(
            text.replace("%", r"\%").replace("_", r"\_").replace("*", "%").replace("?", "_"),
            escape="\\",
        )
    return col == text


# The flat query record, one definition: (record key, row, column) in output order, the row
# being the trial, its node or the metric (a failed trial has no metric: None). An empty row
# marks a key derived in query_records. The statistics follow the vocabulary's STATISTICS.
RECORD_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("campaign", "trial", "campaign_id"),
    ("campaign_name", "", ""),
    ("trial", "trial", "id"),
    ("trial_key", "trial", "trial_key"),
    ("benchmark", "trial", "benchmark"),
    ("workload", "trial", "workload"),
    ("params", "trial", "params"),
    ("node", "node", "hostname"),
    ("node_id", "trial", "ray_node_id"),
    ("ranks", "trial", "ranks"),
    ("gpu", "trial", "gpu_index"),
    ("gpu_peer", "trial", "gpu_peer"),
    ("gpu_uuid", "trial", "gpu_uuid"),
    ("node_labels", "", ""),
    ("hardware_class", "node", "hardware_class"),
    ("cpu_model", "node", "cpu_model"),
    ("gpu_model", "node", "gpu_model"),
    ("status", "trial", "status"),
    ("attempt", "trial", "attempt"),
    ("failure_phase", "trial", "failure_phase"),
    ("failure_reason", "trial", "failure_reason"),
    ("stop_reason", "trial", "stop_reason"),
    ("iterations", "trial", "iterations"),
    ("timer", "trial", "timer"),
    ("started_at", "", ""),
    ("workload_version", "trial", "workload_version"),
    ("primary_metric", "trial", "primary_metric"),
    ("sweep_params", "", ""),
    ("detail_metrics", "", ""),
    ("param_defaults", "", ""),
    ("metric", "metric", "name"),
    ("unit", "metric", "unit"),
    ("higher_is_better", "metric", "higher_is_better"),
    *((stat, "metric", stat) for stat in STATISTICS),
    ("peak_key", "metric", "ceiling"),
)


def query_records(session: Session, f: Filters) -> list[dict[str, Any]]:
    """Flat records, one per (trial, metric); failed trials carry null metric fields."""
    base = select(Trial) if f.all_attempts else latest_trials()
    t = aliased(Trial, base.subquery())
    q = (
        select(t, Node, Metric, Campaign.name, CampaignNode.labels)
        .join(Campaign, Campaign.id == t.campaign_id)
        .outerjoin(Node, Node.id == t.node_id)
        .outerjoin(
            CampaignNode,
            and_(
                CampaignNode.campaign_id == t.campaign_id, CampaignNode.ray_node_id == t.ray_node_id
            ),
        )
        .outerjoin(Metric, Metric.trial_id == t.id)
    )
    if f.campaign:
        q = q.where(t.campaign_id == f.campaign)
    if f.workload:
        q = q.where(value_clause(t.workload, f.workload))
    if f.status:
        if f.status not in STATUSES:
            raise QueryError(f"status must be one of {', '.join(STATUSES)} or all")
        q = q.where(t.status == f.status)
    if f.metrics:
        q = q.where(Metric.name.in_(f.metrics))
    if f.since:
        q = q.where(t.started_at >= f.since)
    if f.until:
        q = q.where(t.started_at < f.until)
    for key, value in f.where:
        if key.startswith("node."):
            name = key.removeprefix("node.")
            if name not in NODE_FIELDS:
                raise QueryError(f"unknown node field {name!r}; valid: {', '.join(NODE_FIELDS)}")
            q = q.where(value_clause(getattr(Node, name), value))
        else:
            name = key.removeprefix("params.")
            q = q.where(value_clause(t.params[name], value))
    q = q.order_by(t.campaign_id, t.id, Metric.name)
    ceilings = measured_ceilings(session)
    out = []
    for trial, node, metric, campaign_name, labels in session.execute(q):
        rows = {"trial": trial, "node": node, "metric": metric, "": None}
        rec: dict[str, Any] = {
            key: getattr(rows[source], attr) if rows[source] is not None else None
            for key, source, attr in RECORD_FIELDS
        }
        rec["campaign_name"] = campaign_name
        rec["node_labels"] = labels or {}
        rec["started_at"] = trial.started_at.isoformat() if trial.started_at else None
        rec["sweep_params"] = (trial.workload_meta or {}).get("sweep_params", [])
        rec["detail_metrics"] = (trial.workload_meta or {}).get("detail_metrics", [])
        rec["param_defaults"] = (trial.workload_meta or {}).get("param_defaults")
        add_peaks(rec, ceilings)
        out.append(rec)
    add_node_labels(out)
    if not out:  # a typo in a filter reads as "0 records": say which filter names nothing
        reason = unknown_filter(
            session,
            campaign=f.campaign,
            workload=f.workload,
            metrics=f.metrics,
            where=f.where,
            node_fields=NODE_FIELDS,
        )
        if reason:
            raise QueryError(reason)
    return out


def add_node_labels(records: list[dict[str, Any]]) -> None:
    """Give each record ``node_label``: its host, or ``host (id8)`` where several Ray nodes
    of the records share that host; a multi-rank trial names the nodes of all its ranks; a
    per-GPU trial adds its GPU (``GPU 3``, a pair ``GPU 0→1``). ``host_label`` is the same
    without the GPU."""
    ids: dict[str, set[str]] = {}
    for r in records:
        for nid, host in _rank_nodes(r):
            ids.setdefault(host, set()).add(nid)

    def label(nid: str, host: str) -> str:
        return f"{host} ({nid[:8]})" if len(ids.get(host, ())) > 1 else host

    for r in records:
        r["host_label"] = ", ".join(dict.fromkeys(label(n, h) for n, h in _rank_nodes(r)))
        r["node_label"] = r["host_label"] + gpu_suffix(r.get("gpu"), r.get("gpu_peer"))


def _rank_nodes(r: dict[str, Any]) -> list[tuple[str, str]]:
    """(ray node id, hostname) of each rank of the record's trial, or of its one node."""
    if r.get("ranks"):
        return [(x.get("ray_node_id", ""), x.get("hostname", "")) for x in r["ranks"]]
    return [(r.get("node_id") or "", r.get("node") or "")]


GROUP_FIELDS = ("hardware_class", "gpu_model", "cpu_model", "node")


def group_records(records: list[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    """Aggregate ok records per (``by`` value, workload, params, metric): how many trials,
    and the median, mean, min and max of their medians."""
    if by not in GROUP_FIELDS:
        raise QueryError(f"cannot group by {by!r}; valid: {', '.join(GROUP_FIELDS)}")
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        if r["metric"] is None or r["median"] is None:
            continue
        value = r.get("host_label") if by == "node" else r[by]  # co-located nodes apart
        key = (value or "", r["workload"], repr(sorted(r["params"].items())), r["metric"])
        groups.setdefault(key, []).append(r)
    out = []
    for (value, workload, _, metric), rs in sorted(groups.items(), key=lambda kv: kv[0]):
        medians = [r["median"] for r in rs]
        out.append(
            {
                by: value,
                "workload": workload,
                "params": rs[0]["params"],
                "param_defaults": rs[0].get("param_defaults"),
                "metric": metric,
                "unit": rs[0]["unit"],
                "higher_is_better": rs[0]["higher_is_better"],
                "trials": len(rs),
                "nodes": len({r["node_id"] for r in rs}),
                "median": statistics.median(medians),
                "mean": statistics.fmean(medians),
                "min": min(medians),
                "max": max(medians),
            }
        )
    return out


def telemetry_query(campaign: str | None = None, metrics: tuple[str, ...] = ()) -> Select:
    """Telemetry samples with their campaign, trial and node, in trial and time order."""
    q = (
        select(
            Trial.campaign_id.label("campaign"),
            TelemetrySample.trial_id.label("trial"),
            Node.hostname.label("node"),
            TelemetrySample.source,
            TelemetrySample.device,
            TelemetrySample.metric,
            TelemetrySample.unit,
            TelemetrySample.t,
            TelemetrySample.value,
        )
        .join(Trial, Trial.id == TelemetrySample.trial_id)
        .outerjoin(Node, Node.id == Trial.node_id)
        .order_by(TelemetrySample.trial_id, TelemetrySample.t)
    )
    if campaign:
        q = q.where(Trial.campaign_id == campaign)
    if metrics:
        q = q.where(TelemetrySample.metric.in_(metrics))
    return q
