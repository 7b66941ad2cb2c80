"""One trial's facts from the worker's outcome to the stored row and back out of a query:
every field the three shapes share arrives unchanged, with no copy written out by hand."""

from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy.orm import Session

from harness.campaign.placement import PlacedTrial
from harness.campaign.recording import node_record, trial_record
from harness.cluster.fingerprint import collect_facts
from harness.cluster.inventory import NodeInfo
from harness.node.runner import run_trial
from harness.playbook.expand import TrialSpec
from harness.playbook.model import Settings
from results_db import CampaignRecord, NodeRecord, ResultStore, sqlite_url
from results_db.models import Node, Trial
from results_db.query import RECORD_FIELDS, Filters, query_records
from results_db.vocabulary import STATISTICS

SETTINGS = Settings(
    warmup_iterations=1, min_repetitions=3, max_repetitions=3, min_duration_s=0.0, timeout_s=60
)


def placed(workload: str, params: dict, node: NodeInfo) -> PlacedTrial:
    spec = TrialSpec("b", workload, params, "ph", SETTINGS, target="all", each=False)
    return PlacedTrial(spec, (node,), key=f"k-{workload}")


def local_node() -> NodeInfo:
    facts = collect_facts()
    return NodeInfo("r" * 56, "127.0.0.1", {}, {}, facts, fingerprint="fp", hardware_class="hw")


def store_and_query(tmp_path: Path, trial: PlacedTrial, outcome) -> tuple[Trial, dict]:
    store = ResultStore(sqlite_url(tmp_path / "r.sqlite"))
    store.start_campaign(
        CampaignRecord("c1", "n", "", "p", "t", "h", {}, datetime.now(timezone.utc), "0")
    )
    node_id = store.upsert_node(node_record(trial.node))
    store.record_trial(trial_record("c1", trial, outcome, node_id, attempt=1))
    with Session(store.engine) as s:
        row = s.query(Trial).one()
        s.expunge(row)
        records = query_records(s, Filters(campaign="c1", status=None))
    store.engine.dispose()
    return row, records


def test_an_ok_trial_arrives_in_the_row_and_the_query_record_unchanged(tmp_path: Path) -> None:
    trial = placed("memory.stream", {"op": "triad", "size_mib": 1.0, "device": "cpu"}, local_node())
    outcome = run_trial("memory.stream", trial.spec.params, SETTINGS)
    assert outcome.status == "ok", outcome.failure_reason
    row, records = store_and_query(tmp_path, trial, outcome)

    for name in ("stop_reason", "timer", "warmup_iterations", "measure_seconds"):
        assert getattr(row, name) == getattr(outcome, name), name
    assert row.iterations == len(outcome.seconds) == 3
    assert row.started_at is not None and row.finished_at >= row.started_at
    by_metric = {r["metric"]: r for r in records}
    assert set(by_metric) >= {name for name, _, _ in outcome.metric_specs}
    rec = next(iter(by_metric.values()))
    assert (rec["stop_reason"], rec["timer"], rec["iterations"]) == (
        outcome.stop_reason,
        outcome.timer,
        3,
    )
    assert rec["cpu_model"] == trial.node.facts["cpu_model"]
    assert rec["hardware_class"] == "hw" and rec["node_id"] == trial.node.ray_node_id
    for name, summary in outcome.summaries.items():
        for stat in STATISTICS:
            assert by_metric[name][stat] == summary[stat], (name, stat)


def test_a_failed_trial_keeps_its_phase_and_reason_through_the_store(tmp_path: Path) -> None:
    trial = placed(
        "memory.stream", {"op": "triad", "size_mib": 1.0, "device": "cuda:7"}, local_node()
    )
    outcome = run_trial("memory.stream", trial.spec.params, SETTINGS)
    assert outcome.status != "ok"
    row, records = store_and_query(tmp_path, trial, outcome)
    assert (row.failure_phase, row.failure_reason) == (
        outcome.failure_phase,
        outcome.failure_reason,
    )
    [rec] = records
    assert (rec["status"], rec["failure_phase"], rec["failure_reason"]) == (
        row.status,
        outcome.failure_phase,
        outcome.failure_reason,
    )
    assert rec["metric"] is None and all(rec[stat] is None for stat in STATISTICS)


def test_every_node_fact_the_record_names_is_stored_in_its_column(tmp_path: Path) -> None:
    node = local_node()
    rec = node_record(node)
    store = ResultStore(sqlite_url(tmp_path / "r.sqlite"))
    node_id = store.upsert_node(rec)
    with Session(store.engine) as s:
        row = s.get(Node, node_id)
        for f in fields(NodeRecord):
            if f.name in ("facts", "fingerprint", "hardware_class", "hostname"):
                continue
            expected = node.facts.get(f.name)
            assert getattr(row, f.name) == (f.default if expected is None else expected), f.name
    store.engine.dispose()


def test_the_query_record_reads_only_columns_that_exist() -> None:
    from results_db.models import Metric

    models = {"trial": Trial, "node": Node, "metric": Metric}
    for key, source, column in RECORD_FIELDS:
        if source:
            assert hasattr(models[source], column), (key, source, column)
    keys = [key for key, _, _ in RECORD_FIELDS]
    assert len(keys) == len(set(keys))
