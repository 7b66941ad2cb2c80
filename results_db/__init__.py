"""The SQL results store: models, migrations, write and query API. No Ray, no torch.

Names are imported on first use (PEP 562), so a light import such as
``results_db.vocabulary`` or ``results_db.urls`` does not load SQLAlchemy and Alembic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "errors": ("QueryError", "StoreError"),
    "query": (
        "Filters",
        "group_records",
        "list_campaigns",
        "list_ceilings",
        "query_records",
        "trial_contexts",
    ),
    "records": (
        "CampaignRecord",
        "EnergyRecord",
        "IdleBaselineRecord",
        "MetricRecord",
        "NodeRecord",
        "TelemetryRecord",
        "TelemetrySummaryRecord",
        "TrialRecord",
    ),
    "store": ("ResultStore",),
    "urls": ("safe_url", "sqlite_url"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
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


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'results_db' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"results_db.{module}"), name)
    globals()[name] = value  # the next lookup is a plain global
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from results_db.errors import QueryError, StoreError
    from results_db.query import (
        Filters,
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
    from results_db.store import ResultStore
    from results_db.urls import safe_url, sqlite_url
