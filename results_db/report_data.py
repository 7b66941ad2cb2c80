"""Everything the HTML report shows about a campaign, as plain data."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from results_db.baseline import check, control_history
from results_db.models import Campaign, CampaignNode, Node, Trial
from results_db.query import Filters, measured_ceilings, query_records, telemetry_query

TELEMETRY_METRICS = (
    "power_instant",
    "power_avg",
    "power",
    "cpu_util",
    "gpu_util",
    "sm_clock",
    "running",  # a serving endpoint's own metrics (workloads/server_metrics.py)
    "waiting",
    "kv_cache_usage",
)


def campaign_data(session: Session, campaign_id: str) -> dict[str, Any] | None:
    """The campaign, its nodes, metric records, trial contexts, telemetry and ceilings."""
    c = session.get(Campaign, campaign_id)
    if c is None:
        return None
    nodes = [
        {
            "ray_node_id": cn.ray_node_id,
            "labels": cn.labels,
            "hostname": n.hostname,
            "cpu_model": n.cpu_model,
            "cpu_threads": n.cpu_threads,
            "memory_bytes": n.memory_bytes,
            "gpu_count": n.gpu_count,
            "gpu_model": n.gpu_model,
            "torch": n.torch,
            "cuda": n.cuda,
            "driver": n.driver,
            "hardware_class": n.hardware_class,
        }
        for cn, n in session.execute(
            select(CampaignNode, Node)
            .join(Node, Node.id == CampaignNode.node_id)
            .where(CampaignNode.campaign_id == campaign_id)
            .order_by(Node.hostname)
        )
    ]
    contexts = {
        tid: ctx
        for tid, ctx in session.execute(
            select(Trial.id, Trial.context).where(Trial.campaign_id == campaign_id)
        )
    }
    telemetry = [
        dict(r._mapping) for r in session.execute(telemetry_query(campaign_id, TELEMETRY_METRICS))
    ]
    return {
        "campaign": {
            "id": c.id,
            "name": c.name,
            "description": c.description,
            "status": c.status,
            "created_at": c.created_at.isoformat(),
            "harness_version": c.harness_version,
            "playbook_hash": c.playbook_hash,
            "cluster": c.cluster,
            "user": c.user,
        },
        "nodes": nodes,
        "records": query_records(session, Filters(campaign=campaign_id, status=None)),
        "contexts": contexts,
        "telemetry": telemetry,
        "ceilings": {f"{hw}|{key}": c.value for (hw, key), c in measured_ceilings(session).items()},
        **fleet_health(session, campaign_id),
    }


def fleet_health(session: Session, campaign_id: str) -> dict[str, Any]:
    """``harness check``'s verdicts on the campaign (against the history and its peers) and
    control-chart data of the keys furthest off."""
    verdicts = check(session, campaign_id)
    return {"health": verdicts, "control": control_history(session, verdicts)}
