"""A node removed mid-campaign: its trials fail as node lost, the rest are kept, and
--resume completes them once a like node joins. Uses a cluster of its own, since it
removes a node."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli.app import app
from harness.cluster.local import NodeSpec, local_cluster

pytestmark = pytest.mark.ray

FAST_HEALTH = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_failure_threshold": 3,
}

PLAYBOOK = """
campaign: {{name: nodeloss}}
defaults: {{warmup_iterations: 0, min_repetitions: 3, min_duration_s: 0, timeout_s: 120,
           telemetry: {{sources: [host]}}}}
targets:
  victim: {{labels: {{role: victim}}}}
  keeper: {{labels: {{role: keeper}}}}
benchmarks:
  - {{name: slow, workload: test.flaky, on: victim,
     params: {{sleep_s: 2, started: "{started}"}}, settings: {{min_repetitions: 30}}}}
  - {{name: queued, workload: test.flaky, on: victim, params: {{size: 7}}}}
  - {{name: kept, workload: test.flaky, on: keeper, params: {{size: [10, 20, 30]}}}}
"""


def test_node_lost_mid_campaign_then_resumed(tmp_path: Path) -> None:
    with local_cluster(
        [
            NodeSpec(1, {"role": "head"}),
            NodeSpec(1, {"role": "victim"}),
            NodeSpec(1, {"role": "keeper"}),
        ],
        prefix="hnl",
        system_config=FAST_HEALTH,
    ) as local:
        cluster, victim = local.cluster, local.workers[0]
        started = tmp_path / "started"
        pb, db_path = tmp_path / "n.yaml", tmp_path / "n.sqlite"
        pb.write_text(PLAYBOOK.format(started=started))
        results = {}
        run = threading.Thread(
            target=lambda: results.update(
                r=CliRunner().invoke(
                    app, ["run", str(pb), "--db", str(db_path), "--address", cluster.address]
                )
            )
        )
        run.start()
        deadline = time.monotonic() + 60
        while not started.exists():
            assert time.monotonic() < deadline, "the slow trial never started"
            time.sleep(0.1)
        time.sleep(0.5)
        cluster.remove_node(victim, allow_graceful=False)
        run.join(timeout=120)
        result = results["r"]
        assert result.exit_code == 1, result.output + result.stderr
        # Ray's own report of the dead raylet (dozens of coloured lines) stays off our output;
        # the trials say what happened.
        assert "(raylet)" not in result.output + result.stderr
        db = sqlite3.connect(db_path)
        rows = {
            (b, s): r
            for b, s, r in db.execute("select benchmark, status, failure_reason from trials")
        }
        assert rows[("slow", "failed")].startswith("node lost:")
        assert rows[("queued", "failed")].startswith("node lost:")
        assert (
            db.execute(
                "select count(*) from trials where benchmark='kept' and status='ok'"
            ).fetchone()[0]
            == 3
        )
        (campaign,) = db.execute("select id from campaigns").fetchone()
        kept_before = db.execute("select id, trial_key from trials where status='ok'").fetchall()

        # A like node joins (same labels and resources, so the same identity): resume.
        cluster.add_node(num_cpus=1, labels={"role": "victim"})
        cluster.wait_for_nodes()
        # Settings are not part of a trial's key: fewer repetitions make the retry quick.
        result = CliRunner().invoke(
            app,
            [
                "run",
                str(pb),
                "--db",
                str(db_path),
                "--address",
                cluster.address,
                "--resume",
                campaign,
                "--set",
                "benchmarks.slow.settings.min_repetitions=1",
            ],
        )
        assert result.exit_code == 0, result.output + result.stderr
        assert "3 skipped" in result.output
        assert (
            db.execute(
                "select id, trial_key from trials where status='ok' and attempt=1"
            ).fetchall()
            == kept_before
        )
        assert sorted(
            db.execute("select benchmark, attempt, status from trials where attempt=2").fetchall()
        ) == [("queued", 2, "ok"), ("slow", 2, "ok")]
