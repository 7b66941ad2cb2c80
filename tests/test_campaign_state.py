"""Campaign state across runs on the shared real Ray cluster: the resume hint reproduces the
options, dry runs honour --resume, failed trials whose node left keep the exit code at 1,
a silent driver's campaign reads as abandoned, and stored text is never taken as markup or
terminal/bidi control."""

from __future__ import annotations

import json
import shlex
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli.app import app

pytestmark = pytest.mark.ray
runner = CliRunner()

PLAYBOOK = r"""
campaign: {{name: state, description: "evil \e[2J\u202eexe.txt"}}
defaults: {{warmup_iterations: 0, min_repetitions: 2, min_duration_s: 0, max_duration_s: 2,
           timeout_s: 60, telemetry: {{sources: [host]}}}}
targets: {{zone_a: {{labels: {{zone: a}}}}}}
benchmarks:
  - {{name: everywhere, workload: test.flaky, each: true, params: {{size: 10}}}}
  - {{name: flaky, workload: test.flaky, on: zone_a, params: {{marker: "{marker}", size: [10, 20]}}}}
"""


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output + result.stderr, result.output + result.stderr
    return result


def test_resume_hint_dry_run_departed_nodes_heartbeat_and_hostile_text(
    ray_cluster, tmp_path: Path, db_path: Path
) -> None:
    # A marker path holding rich markup: the failure reason quotes it.
    (tmp_path / "m[").mkdir()
    marker = tmp_path / "m[" / "bold]x[batch, seq]"
    marker.write_text("fail until removed")
    pb = tmp_path / "pb.yaml"
    pb.write_text(PLAYBOOK.format(marker=marker))
    options = ["--db", str(db_path), "--address", ray_cluster.address]
    override = "benchmarks.everywhere.params.size=11"

    result = invoke("run", str(pb), *options, "--set", override)
    assert result.exit_code == 1, result.output + result.stderr
    # The driver printed the reason as text (a MarkupError once stopped the campaign here).
    assert f"marker {marker} present" in result.stderr
    db = sqlite3.connect(db_path)
    cid, heartbeat = db.execute("select id, heartbeat_at from campaigns").fetchone()
    assert heartbeat is not None
    hint = next(line for line in result.stdout.splitlines() if "to retry" in line)
    retry = shlex.split(hint.split(": ", 1)[1])
    assert retry == ["harness", "run", str(pb), *options, "--set", override, "--resume", cid]

    result = invoke("results", "show", cid, "--db", str(db_path))
    assert "[batch, seq]" in result.stdout.replace("\n", "")

    report = tmp_path / "r.html"
    assert invoke("report", cid, "--db", str(db_path), "-o", str(report)).exit_code == 0
    html = report.read_text()
    assert "\x1b" not in html and "\u202e" not in html
    assert "evil \\x1b[2J\\u202eexe.txt" in html

    # A dry run of the resume lists what is left to run, and stores nothing.
    trials_before = db.execute("select count(*) from trials").fetchone()[0]
    result = invoke("run", str(pb), *options, "--set", override, "--dry-run", "--resume", cid)
    assert result.exit_code == 0, result.stderr
    assert f"resuming {cid}: 3 trial(s) already done" in result.stderr
    assert "2 trial(s)" in result.stdout and "flaky" in result.stdout
    assert db.execute("select count(*) from trials").fetchone()[0] == trials_before

    # An `each` trial of a node that has since left the cluster, failed.
    (max_id,) = db.execute("select max(id) from trials").fetchone()
    db.executescript(
        f"""
        create temp table ghost as select * from trials where benchmark = 'everywhere' limit 1;
        update ghost set id = {max_id + 1}, trial_key = 'ghost-key', ray_node_id = 'deadbeefcafe',
            status = 'failed', failure_phase = 'dispatch',
            failure_reason = 'node lost: ghost left the cluster';
        insert into trials select * from ghost;
        """
    )
    db.commit()

    # Killed drivers: a `running` campaign whose heartbeat is fresh cannot be resumed...
    now = datetime.now(timezone.utc)
    db.execute("update campaigns set status='running', heartbeat_at=?", (now.isoformat(),))
    db.commit()
    result = invoke(*retry[1:])
    assert result.exit_code == 2 and f"campaign {cid} is still running" in result.stderr
    # ...and one silent for long reads as abandoned, and resumes.
    db.execute("update campaigns set heartbeat_at=?", ((now - timedelta(hours=1)).isoformat(),))
    db.commit()
    listed = json.loads(
        invoke("results", "campaigns", "--db", str(db_path), "--format", "json").stdout
    )
    assert listed[0]["status"] == "abandoned"

    marker.unlink()
    result = invoke(*retry[1:])  # the hint, followed exactly as printed
    assert result.exit_code == 1, result.output + result.stderr
    assert "2 ok, 0 failed, 3 skipped (already done), 1 left failed (not in this plan)" in (
        result.stdout
    )
    assert (
        "stays failed, its node is not in the cluster: everywhere on " in result.stderr
        and "(deadbeef): failed: node lost: ghost left the cluster" in result.stderr
    )
    assert db.execute("select status from campaigns").fetchone()[0] == "completed"


def test_unknown_resume_id_is_refused_before_ray_starts(tmp_path: Path, db_path: Path) -> None:
    invoke("db", "upgrade", "--db", str(db_path))
    smoke = Path(__file__).parent.parent / "playbooks" / "smoke.yaml"
    for extra in ([], ["--dry-run"]):
        t0 = time.monotonic()
        result = invoke("run", str(smoke), "--db", str(db_path), "--resume", "nosuch", *extra)
        assert result.exit_code == 2 and "no campaign 'nosuch'" in result.stderr
        assert time.monotonic() - t0 < 3  # no embedded Ray cluster was started (12 s)


def test_only_the_first_sigterm_interrupts_the_driver() -> None:
    """scancel's SIGTERM reaches the driver twice (from Slurm, and passed on by the batch
    shell): the first interrupts, the second must not cut short the campaign's marking."""
    import os
    import signal

    from harness.cluster.session import _terminate_as_interrupt

    previous = _terminate_as_interrupt()
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler raises here
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # while the campaign is being marked
            time.sleep(0.05)
            marked = True
        except KeyboardInterrupt:
            marked = False  # the marking would have been cut short
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert marked
