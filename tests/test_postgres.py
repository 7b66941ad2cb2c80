"""The results store on a real PostgreSQL server (tests/conftest.py starts a private one)."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from typer.testing import CliRunner

from harness.cli.app import app
from results_db import (
    CampaignRecord,
    MetricRecord,
    NodeRecord,
    ResultStore,
    StoreError,
    TelemetryRecord,
    TrialRecord,
)
from results_db.models import Base


@pytest.fixture
def pg_store(postgres) -> ResultStore:
    store = ResultStore(postgres.url)
    with postgres.connect() as c:  # a clean slate per test, schema kept
        c.execute("truncate campaigns, nodes restart identity cascade")
    return store


def _campaign(cid: str) -> CampaignRecord:
    return CampaignRecord(cid, "pg", "", "", "text", "h", {}, datetime.now(timezone.utc), "0")


def test_migrations_match_the_models_on_postgresql(postgres, pg_store) -> None:
    with pg_store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_telemetry_is_copied_in_bulk_and_reads_back(postgres, pg_store) -> None:
    pg_store.start_campaign(_campaign("c"))
    nid = pg_store.upsert_node(NodeRecord("fp", "hw", "h", {"k": 1}))
    rows = [
        TelemetryRecord("host", f"cpu{i % 4}", "cpu_util", "%", 1000.0 + i, i % 100)
        for i in range(50_000)
    ]
    tid = pg_store.record_trial(
        TrialRecord(
            campaign_id="c",
            trial_key="k",
            benchmark="b",
            workload="w",
            params={"op": "triad"},
            params_hash="p",
            status="ok",
            attempt=1,
            node_id=nid,
            telemetry=rows,
            metrics=[MetricRecord("time", "ms", False, [1.0, 2.0], {"n": 2, "median": 1.5})],
        )
    )
    with postgres.connect() as c:
        n, total = c.execute(
            "select count(*), sum(value) from telemetry_samples where trial_id=%s", (tid,)
        ).fetchone()
        op = c.execute("select params->>'op' from trials where id=%s", (tid,)).fetchone()[0]
    assert n == 50_000 and total == sum(i % 100 for i in range(50_000))
    assert op == "triad"


def test_concurrent_campaigns_share_nodes_without_conflict(postgres, pg_store) -> None:
    errors: list[BaseException] = []

    def campaign(cid: str) -> None:
        try:
            store = ResultStore(postgres.url)
            store.start_campaign(_campaign(cid))
            for i in range(20):
                nid = store.upsert_node(NodeRecord(f"fp{i % 3}", "hw", f"h{i % 3}", {}))
                store.record_trial(
                    TrialRecord(
                        campaign_id=cid,
                        trial_key=f"k{i}",
                        benchmark="b",
                        workload="w",
                        params={},
                        params_hash="p",
                        status="ok",
                        attempt=1,
                        node_id=nid,
                    )
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=campaign, args=(f"c{j}",)) for j in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with postgres.connect() as c:
        assert c.execute("select count(*) from nodes").fetchone()[0] == 3
        assert c.execute("select count(*) from trials").fetchone()[0] == 80


def test_wrong_password_is_refused_without_printing_it(postgres) -> None:
    url = postgres.url.replace(postgres.PASSWORD, "not-the-pw")
    with pytest.raises(StoreError) as exc:
        ResultStore(url)
    assert "not-the-pw" not in str(exc.value) and "postgres:***@" in str(exc.value)
    result = CliRunner().invoke(app, ["results", "campaigns", "--db", url])
    assert result.exit_code == 2
    assert "not-the-pw" not in result.output + result.stderr
    assert "password authentication failed" in result.stderr


@pytest.mark.ray
def test_a_campaign_stores_into_postgresql(ray_cluster, postgres, pg_store, tmp_path) -> None:
    pb = tmp_path / "pg.yaml"
    pb.write_text(
        "campaign: {name: pgrun}\n"
        "defaults: {warmup_iterations: 1, min_repetitions: 3, min_duration_s: 0,\n"
        "           telemetry: {interval_s: 0.05, sources: [host]}}\n"
        "benchmarks:\n"
        "  - {workload: memory.stream, each: true, params: {op: [copy, triad], size_mib: 1}}\n"
    )
    result = CliRunner().invoke(
        app, ["run", str(pb), "--db", postgres.url, "--address", ray_cluster.address]
    )
    assert result.exit_code == 0, result.output + result.stderr
    assert postgres.PASSWORD not in result.output + result.stderr
    assert "postgres:***@127.0.0.1" in result.output
    with postgres.connect() as c:
        assert c.execute("select count(*) from trials where status='ok'").fetchone()[0] == 6
        assert c.execute("select count(distinct ray_node_id) from trials").fetchone()[0] == 3
        assert (
            c.execute(
                "select count(*) from metrics m join samples s on s.metric_id = m.id "
                "where m.name = 'bandwidth'"
            ).fetchone()[0]
            >= 18
        )
        assert c.execute("select count(*) from telemetry_samples").fetchone()[0] > 0
    result = CliRunner().invoke(
        app,
        [
            "results",
            "query",
            "--db",
            postgres.url,
            "--where",
            "op=triad",
            "--metric",
            "bandwidth",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0 and result.stdout.count('"op": "triad"') == 3


def test_processes_creating_a_new_postgres_schema_at_once_all_succeed(postgres, tmp_path) -> None:
    from results_db.schema import head_revision
    from tests.test_store import race_to_create

    with postgres.connect("postgres", autocommit=True) as c:
        c.execute("drop database if exists harness_race")
        c.execute("create database harness_race")
    url = postgres.url.rsplit("/", 1)[0] + "/harness_race"
    assert race_to_create(url, tmp_path) == [head_revision()] * 4
