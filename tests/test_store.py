"""The results store on a real SQLite file, checked with SQL of its own."""

import json
import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine
from sqlalchemy.exc import IntegrityError

from results_db import (
    CampaignRecord,
    MetricRecord,
    NodeRecord,
    ResultStore,
    StoreError,
    TelemetryRecord,
    TrialRecord,
    safe_url,
    sqlite_url,
)
from results_db.models import Base
from results_db.schema import head_revision


def campaign(cid: str = "c1") -> CampaignRecord:
    return CampaignRecord(
        id=cid,
        name="unit",
        description="",
        playbook_path="p.yaml",
        playbook_text="campaign: {}",
        playbook_hash="abc",
        effective={"campaign": {"name": "unit"}},
        created_at=datetime.now(timezone.utc),
        harness_version="0.1.0",
    )


def node(fp: str = "fp1") -> NodeRecord:
    return NodeRecord(
        fingerprint=fp,
        hardware_class="hw1",
        hostname="h",
        facts={"cpu_model": "X"},
        cpu_model="X",
        gpu_count=0,
    )


def insert_old_campaign(
    db: sqlite3.Connection, harness_version: str, effective: str = "{}"
) -> None:
    """A campaign row as an older harness wrote it, straight into SQLite (id 'old')."""
    db.execute(
        "insert into campaigns (id, name, description, playbook_path, playbook_text, playbook_hash,"
        " effective, status, created_at, harness_version, user, driver_host, cluster) values "
        "('old', 'n', '', '', 'text', 'h', ?, 'completed', '2026-01-01', ?, '', '', '')",
        (effective, harness_version),
    )


def trial(store: ResultStore, node_id: int, status: str = "ok", attempt: int = 1) -> TrialRecord:
    samples = [1.0, 2.0, 3.0]
    return TrialRecord(
        campaign_id="c1",
        trial_key="k1",
        benchmark="b",
        workload="memory.stream",
        params={"op": "triad", "size_mib": 64.0},
        params_hash="ph",
        status=status,
        attempt=attempt,
        node_id=node_id,
        ray_node_id="r1",
        iterations=3,
        metrics=[MetricRecord("bandwidth", "GB/s", True, samples, {"n": 3, "median": 2.0})]
        if status == "ok"
        else [],
        telemetry=[
            TelemetryRecord("host", "cpu", "cpu_util", "%", 1.0 + i, 50.0) for i in range(4)
        ],
        sources=[("host", True, ""), ("nvml", False, "no NVML")],
        failure_phase=None if status == "ok" else "setup",
        failure_reason=None if status == "ok" else "boom",
    )


def test_migrations_create_exactly_the_models(db_path: Path) -> None:
    ResultStore(sqlite_url(db_path))
    engine = create_engine(sqlite_url(db_path))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        version = conn.exec_driver_sql("select version_num from alembic_version").scalar()
    assert diff == []
    assert version == head_revision()


def test_trial_with_metrics_samples_and_telemetry_lands_in_sql(db_path: Path) -> None:
    store = ResultStore(sqlite_url(db_path))
    store.start_campaign(campaign())
    nid = store.upsert_node(node())
    assert store.upsert_node(node()) == nid  # deduplicated by fingerprint
    assert store.upsert_node(node("fp2")) != nid
    tid = store.record_trial(trial(store, nid))

    db = sqlite3.connect(db_path)
    assert db.execute("select count(*) from nodes").fetchone()[0] == 2
    row = db.execute(
        "select workload, status, json_extract(params, '$.op') from trials where id=?", (tid,)
    ).fetchone()
    assert row == ("memory.stream", "ok", "triad")
    assert db.execute(
        "select m.name, m.unit, m.higher_is_better, m.median, count(s.idx), sum(s.value) "
        "from metrics m join samples s on s.metric_id = m.id where m.trial_id=? group by m.id",
        (tid,),
    ).fetchone() == ("bandwidth", "GB/s", 1, 2.0, 3, 6.0)
    assert (
        db.execute("select count(*) from telemetry_samples where trial_id=?", (tid,)).fetchone()[0]
        == 4
    )
    assert db.execute(
        "select source, available, reason from source_statuses where trial_id=? order by source",
        (tid,),
    ).fetchall() == [("host", 1, ""), ("nvml", 0, "no NVML")]


def test_failed_trial_is_a_row_and_attempts_track_the_latest(db_path: Path) -> None:
    store = ResultStore(sqlite_url(db_path))
    store.start_campaign(campaign())
    nid = store.upsert_node(node())
    store.record_trial(trial(store, nid, status="failed", attempt=1))
    assert store.attempts("c1") == {"k1": (1, "failed")}
    store.record_trial(trial(store, nid, status="ok", attempt=2))
    assert store.attempts("c1") == {"k1": (2, "ok")}
    db = sqlite3.connect(db_path)
    assert db.execute(
        "select attempt, status, failure_phase, failure_reason from trials order by attempt"
    ).fetchall() == [(1, "failed", "setup", "boom"), (2, "ok", None, None)]


def test_a_trial_that_cannot_be_written_leaves_nothing_half_written(db_path: Path) -> None:
    store = ResultStore(sqlite_url(db_path))
    store.start_campaign(campaign())
    nid = store.upsert_node(node())
    bad = trial(store, nid)
    bad.metrics.append(bad.metrics[0])  # duplicate metric name violates a unique constraint
    with pytest.raises(IntegrityError):
        store.record_trial(bad)
    db = sqlite3.connect(db_path)
    assert db.execute("select count(*) from trials").fetchone()[0] == 0
    assert db.execute("select count(*) from telemetry_samples").fetchone()[0] == 0


def test_schema_behind_says_how_to_upgrade(db_path: Path) -> None:
    ResultStore(sqlite_url(db_path))
    db = sqlite3.connect(db_path)
    db.execute("update alembic_version set version_num='0000_older'")
    db.commit()
    with pytest.raises(
        StoreError, match=r"is at schema 0000_older, this harness needs .*harness db upgrade"
    ):
        ResultStore(sqlite_url(db_path))


def test_query_commands_do_not_create_a_schema(db_path: Path) -> None:
    sqlite3.connect(db_path).close()  # an empty SQLite file, not ours
    with pytest.raises(StoreError, match="has no harness schema"):
        ResultStore(sqlite_url(db_path), upgrade=False)


def test_query_commands_never_create_a_file_or_folder(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "results.sqlite"
    with pytest.raises(StoreError, match=f"no database at {missing}"):
        ResultStore(sqlite_url(missing), upgrade=False)
    assert not (tmp_path / "no").exists()


def test_urls_never_show_passwords() -> None:
    assert (
        safe_url("postgresql+psycopg://bob:hunter2@db:5432/h")
        == "postgresql+psycopg://bob:***@db:5432/h"
    )
    with pytest.raises(StoreError) as exc:
        ResultStore("postgresql+psycopg://bob:hunter2@127.0.0.1:1/h")
    assert "hunter2" not in str(exc.value) and "bob:***@" in str(exc.value)
    with pytest.raises(StoreError, match="invalid database URL"):
        ResultStore("::not a url::")


def test_an_older_database_is_upgraded_in_place_keeping_its_rows(db_path: Path) -> None:
    from typer.testing import CliRunner

    from harness.cli.app import app
    from results_db.schema import upgrade

    engine = create_engine(sqlite_url(db_path))
    upgrade(engine, "0001_baseline")
    db = sqlite3.connect(db_path)
    insert_old_campaign(db, harness_version="0.0.1")
    db.commit()
    with pytest.raises(
        StoreError, match=f"is at schema 0001_baseline, this harness needs {head_revision()}"
    ):
        ResultStore(sqlite_url(db_path))
    result = CliRunner().invoke(app, ["db", "upgrade", "--db", str(db_path)])
    assert result.exit_code == 0 and f"0001_baseline -> {head_revision()}" in result.stdout
    store = ResultStore(sqlite_url(db_path))
    assert store.get_campaign("old").playbook_text == "text"
    tables = {r[0] for r in db.execute("select name from sqlite_master where type='table'")}
    assert {"energy_readings", "idle_baselines", "ceilings"} <= tables


def test_rows_written_by_0005_gain_their_workload_facts_on_upgrade(db_path: Path) -> None:
    """A database as today's schema (0005) wrote it: after the upgrade each trial carries its
    workload's version, primary metric and sweep params, and each metric its ceiling key, as
    the workloads declare them now, so readers need no workload code."""
    from results_db.schema import upgrade
    from workloads import get_workload

    engine = create_engine(sqlite_url(db_path))
    upgrade(engine, "0005_tail_percentiles")
    db = sqlite3.connect(db_path)
    insert_old_campaign(db, harness_version="0.1.0")
    trials = {
        1: ("memory.copy", {"direction": "d2d", "count": "read_write", "size_mib": 64.0}),
        2: ("memory.copy", {"direction": "h2d", "count": "one_way", "size_mib": 64.0}),
        3: ("kernel.gemm", {"device": "cuda", "dtype": "bf16", "m": 8, "n": 8, "k": 8}),
        4: ("mylab.unknown", {"size_bytes": 8}),
    }
    for tid, (workload, params) in trials.items():
        db.execute(
            "insert into trials (id, campaign_id, trial_key, benchmark, workload, params,"
            " params_hash, ray_node_id, attempt, status, warmup_iterations, iterations,"
            " settings, context) values (?, 'old', ?, 'b', ?, ?, 'h', '', 1, 'ok', 0, 1, '{}', '{}')",
            (tid, f"k{tid}", workload, json.dumps(params)),
        )
        for name in ("bandwidth", "throughput", "time"):
            db.execute(
                "insert into metrics (trial_id, name, unit, higher_is_better, n, median)"
                " values (?, ?, 'u', 1, 1, 1.0)",
                (tid, name),
            )
    db.commit()
    upgrade(engine)
    got = {
        tid: (version, primary, json.loads(meta)["sweep_params"])
        for tid, version, primary, meta in db.execute(
            "select id, workload_version, primary_metric, workload_meta from trials"
        )
    }
    ceilings = {
        (tid, name): key
        for tid, name, key in db.execute(
            "select trial_id, name, ceiling from metrics where ceiling is not null"
        )
    }
    for tid, (workload, params) in trials.items():
        if workload == "mylab.unknown":
            assert got[tid] == ("", "", ["size_bytes"])
            continue
        cls = get_workload(workload)
        meta = cls.meta(params)
        assert got[tid] == (meta.version, meta.primary_metric, list(meta.sweep_params))
        for name, key in meta.ceilings.items():
            assert ceilings.pop((tid, name)) == key
    assert ceilings == {}  # nothing the workloads do not declare


# A process that opens a new database at the same moment as its siblings (a file barrier
# lines them up after their imports), then prints the schema revision it found.
RACER = """
import os, sys, time
from pathlib import Path
from results_db import ResultStore
from results_db.schema import current_revision
url, folder, me = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
(folder / f"ready-{me}").touch()
while not (folder / "go").exists():
    time.sleep(0.001)
store = ResultStore(url)
print(current_revision(store.engine))
"""


def race_to_create(url: str, folder: Path, racers: int = 4) -> list[str]:
    """Start ``racers`` processes that create the schema of ``url`` at once; their outputs."""
    import subprocess
    import sys
    import time

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, url, str(folder), str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(racers)
    ]
    deadline = time.monotonic() + 120
    while len(list(folder.glob("ready-*"))) < racers:
        assert time.monotonic() < deadline, "racers never got ready"
        time.sleep(0.01)
    (folder / "go").touch()
    outputs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err  # "table campaigns already exists" before the lock
        outputs.append(out.strip())
    return outputs


def test_processes_creating_a_new_sqlite_database_at_once_all_succeed(tmp_path: Path) -> None:
    # Eight racers: with four, the WAL switch's "database is locked" (SQLite runs no busy
    # handler for it) failed about one CI run in ten; with eight, one round in four.
    outputs = race_to_create(sqlite_url(tmp_path / "new.sqlite"), tmp_path, racers=8)
    assert outputs == [head_revision()] * 8


def test_a_failure_quoting_a_huge_input_is_stored_bounded(db_path: Path) -> None:
    from dataclasses import replace

    store = ResultStore(sqlite_url(db_path))
    store.start_campaign(campaign())
    nid = store.upsert_node(node())
    huge = "x" * 10_000_000
    store.record_trial(
        replace(trial(store, nid, "failed"), failure_reason=huge, failure_detail=huge)
    )
    reason, detail = (
        sqlite3.connect(db_path)
        .execute("select failure_reason, failure_detail from trials")
        .fetchone()
    )
    assert len(reason) <= 4096 and reason.endswith("characters cut]")
    assert len(detail) <= 65536 and "9,934,512 characters cut" in detail


def test_json_is_stored_strict_and_old_infinity_rows_are_repaired(db_path: Path) -> None:
    from dataclasses import replace

    from typer.testing import CliRunner

    from harness.cli.app import app
    from results_db.schema import upgrade

    store = ResultStore(sqlite_url(db_path))
    store.start_campaign(campaign())
    nid = store.upsert_node(node())
    rec = replace(trial(store, nid), context={"ratio": float("inf"), "ok": 1.5})
    store.record_trial(rec)
    db = sqlite3.connect(db_path)
    assert db.execute("select json_valid(context), context from trials").fetchone() == (
        1,
        '{"ratio": null, "ok": 1.5}',
    )
    # A database written before: Python's json let `Infinity` in, and every --where failed.
    old = db_path.with_name("old.sqlite")
    upgrade(create_engine(sqlite_url(old)), "0006_workload_meta")
    dbo = sqlite3.connect(old)
    insert_old_campaign(dbo, harness_version="0.0.1", effective='{"x": Infinity}')
    dbo.execute(
        "insert into nodes (id, fingerprint, hardware_class, hostname, cpu_model, gpu_count, "
        "facts, os, python, torch, cuda, driver, gpu_model, first_seen, last_seen) values "
        "(1, 'f', 'hw', 'h', '', 0, '{}', '', '', '', '', '', '', '2026-01-01', '2026-01-01')"
    )
    dbo.execute(
        "insert into trials (campaign_id, trial_key, benchmark, workload, params, params_hash, "
        "node_id, ray_node_id, attempt, status, warmup_iterations, iterations, settings, "
        "context, started_at) values ('old', 'k', 'b', 'memory.stream', "
        "'{\"size_mib\": Infinity}', 'p', 1, 'r', 1, 'ok', 0, 0, '{}', '{}', '2026-01-01')"
    )
    dbo.commit()
    result = CliRunner().invoke(app, ["db", "upgrade", "--db", str(old)])
    assert result.exit_code == 0, result.output
    assert dbo.execute("select params from trials").fetchone() == ('{"size_mib": null}',)
    assert dbo.execute("select effective from campaigns").fetchone() == ('{"x": null}',)
    result = CliRunner().invoke(
        app, ["results", "query", "--db", str(old), "--where", "size_mib=1", "--format", "json"]
    )
    # The query runs again (it failed with a JSON error on Infinity); size_mib is null in
    # every trial, so asking for 1 is a value the store has never held: exit 2, one line.
    assert result.exit_code == 2, result.output
    assert "no trial has that value" in result.output and "JSON" not in result.output


def test_the_head_read_from_the_files_is_alembics_and_reading_needs_no_alembic(
    db_path: Path,
) -> None:
    import subprocess
    import sys

    from alembic.script import ScriptDirectory

    from results_db.schema import alembic_config

    assert head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()
    ResultStore(sqlite_url(db_path))  # created (and migrated) here
    code = (
        "import sys; from results_db import ResultStore; "
        f"ResultStore({sqlite_url(db_path)!r}, upgrade=False); "
        "print('alembic' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
        check=True,
    )
    assert out.stdout.strip() == "False"
