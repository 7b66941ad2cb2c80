"""Why a query found nothing: the filter that names something the store has never held, with
the closest names it does hold (``--workload memory.steam`` -> did you mean memory.stream?).

Run only when a query came back empty, so a normal query pays nothing; a filter that names
real things whose combination is empty is not an error.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from results_db.closest import did_you_mean
from results_db.models import Campaign, Metric, Node, Trial


def _glob(value: Any) -> bool:
    return isinstance(value, str) and ("*" in value or "?" in value)


def _same(a: Any, b: Any) -> bool:
    """Whether a --where value (typed from the command line) equals a stored one."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return str(a) == str(b)


def unknown_filter(
    session: Session,
    *,
    campaign: str | None = None,
    workload: str | None = None,
    metrics: Iterable[str] = (),
    where: Iterable[tuple[str, Any]] = (),
    node_fields: Iterable[str] = (),
) -> str | None:
    """The first filter naming nothing in the store, as one line with a did-you-mean; None
    when every filter names something that exists."""
    if campaign and session.get(Campaign, campaign) is None:
        ids = session.scalars(select(Campaign.id)).all()
        return f"no campaign {campaign!r} in the store{did_you_mean(campaign, ids)}"
    if workload and not _glob(workload):
        known = session.scalars(select(Trial.workload).distinct()).all()
        if workload not in known:
            hint = did_you_mean(workload, known)
            return f"--workload {workload!r}: no such workload in the store{hint}"
    metrics = list(metrics)
    if metrics:
        known = set(session.scalars(select(Metric.name).distinct()).all())
        for m in metrics:
            if m not in known:
                return f"--metric {m!r}: no such metric in the store{did_you_mean(m, known)}"
    where = list(where)
    if not where:
        return None
    values = _param_values(session) if any(not k.startswith("node.") for k, _ in where) else {}
    node_fields = set(node_fields)
    for key, value in where:
        if key.startswith("node."):
            name = key.removeprefix("node.")
            if name not in node_fields or _glob(value):
                continue  # an unknown field is the query's own error
            known = {
                v for v in session.scalars(select(getattr(Node, name)).distinct()) if v is not None
            }
        else:
            name = key.removeprefix("params.")
            if name not in values:
                return (
                    f"--where {key}: no trial has a parameter {name!r}{did_you_mean(name, values)}"
                )
            if _glob(value):
                continue
            known = values[name]
        if not any(_same(value, k) for k in known):
            return (
                f"--where {key}={value}: no trial has that value{did_you_mean(str(value), known)}"
            )
    return None


def _param_values(session: Session) -> dict[str, set[Any]]:
    """Every parameter name in the store with the values it takes (one read per distinct
    parameter set, not per trial)."""
    out: dict[str, set[Any]] = defaultdict(set)
    one_per_set = select(func.min(Trial.id)).group_by(Trial.params_hash)
    for params in session.scalars(select(Trial.params).where(Trial.id.in_(one_per_set))):
        for k, v in (params or {}).items():
            values = out[k]  # the name exists even where every value is null
            if isinstance(v, (str, int, float, bool)):
                values.add(v)
    return dict(out)
