"""The SQL results store: models, migrations, write and query API. No Ray, no torch."""

from results_db.query import (
    Filters,
    QueryError,
    group_records,
    list_campaigns,
    list_ceilings,
    query_records,
    trial_contexts,
)
from results_db.records import (
    CampaignRecord,
    EnergyRecord,
    IdleBaselineRecord,
    MetricRecord,
    NodeRecord,
    TelemetryRecord,
    TelemetrySummaryRecord,
    TrialRecord,
)
from results_db.store import ResultStore, StoreError
from results_db.urls import safe_url, sqlite_url

__all__ = [
    "CampaignRecord",
    "EnergyRecord",
    "Filters",
    "IdleBaselineRecord",
    "MetricRecord",
    "NodeRecord",
    "QueryError",
    "ResultStore",
    "StoreError",
    "TelemetryRecord",
    "TelemetrySummaryRecord",
    "TrialRecord",
    "group_records",
    "list_campaigns",
    "list_ceilings",
    "query_records",
    "safe_url",
    "sqlite_url",
    "trial_contexts",
]
