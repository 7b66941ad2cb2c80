"""Store outages lose nothing measured: a real PostgreSQL restarted and then stopped for 7 s
in one campaign, and stopped with the driver SIGKILLed meanwhile; a SQLite file on a full
tmpfs. Each campaign runs as a real `harness run` process on the shared Ray cluster."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import PostgresServer

pytestmark = pytest.mark.ray

TRIALS = 8
PLAYBOOK = f"""
campaign: {{name: outage}}
defaults: {{warmup_iterations: 0, min_repetitions: 2, min_duration_s: 0, max_duration_s: 5,
           timeout_s: 60, telemetry: {{interval_s: 0.1, sources: [host]}}}}
targets: {{one: {{labels: {{zone: a}}}}}}
benchmarks:
  - name: steps
    workload: test.flaky
    on: one
    params: {{sleep_s: 0.25, size: {list(range(10, 10 + TRIALS))}}}
"""


@pytest.fixture(scope="module")
def outage_pg() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module's own: its tests stop and restart it."""
    server = PostgresServer()
    try:
        yield server
    finally:
        server.shutdown()


class Run:
    """`harness run` in a process of its own, output to files, journals in its own folder."""

    def __init__(self, tmp: Path, db: str, address: str, *extra: str) -> None:
        self.tmp = tmp
        self.state = tmp / "state"
        self.out, self.err = tmp / f"out{len(extra)}.txt", tmp / f"err{len(extra)}.txt"
        pb = tmp / "pb.yaml"
        pb.write_text(PLAYBOOK)
        self.args = ["run", str(pb), "--db", db, "--address", address, "--no-progress"]
        self.proc = self._start(*extra)

    def _start(self, *extra: str) -> subprocess.Popen:
        env = {**os.environ, "HARNESS_STATE_DIR": str(self.state), "HARNESS_HEARTBEAT_S": "1"}
        with open(self.out, "w") as out, open(self.err, "w") as err:
            return subprocess.Popen(
                [sys.executable, "-m", "harness", *self.args, *extra],
                stdout=out,
                stderr=err,
                env=env,
                start_new_session=True,
            )

    def wait(self, timeout: float = 180) -> tuple[int, str, str]:
        try:
            rc = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return rc, self.out.read_text(), self.err.read_text()

    def again(self, *extra: str) -> tuple[int, str, str]:
        self.proc = self._start(*extra)
        return self.wait()

    def journal_trials(self) -> list[dict]:
        """The trial records in the run's journal(s)."""
        found = []
        for path in (self.state / "journal").glob("*.jsonl"):
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("kind") == "trial":
                    found.append(entry["record"])
        return found

    def journals(self) -> list[Path]:
        return list((self.state / "journal").glob("*.jsonl"))


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def fresh_db(server: PostgresServer, name: str) -> str:
    """The URL of a new, empty database on the server; later queries read it."""
    with server.connect("postgres", autocommit=True) as c:
        c.execute(f"create database {name}")
    server.current = name
    return server.url.rsplit("/", 1)[0] + f"/{name}"


def pg_rows(server: PostgresServer, sql: str) -> list[tuple] | None:
    """Rows of a query, or None while the server does not answer."""
    try:
        with server.connect(server.current) as c:
            return c.execute(sql).fetchall()
    except Exception:
        return None


def pg_trials(server: PostgresServer) -> int:
    rows = pg_rows(server, "select count(*) from trials")
    return rows[0][0] if rows else 0


def reported_ok(stdout: str) -> int:
    match = re.search(r"campaign \S+: (\d+) ok, (\d+) failed", stdout)
    assert match, stdout
    return int(match.group(1))


def no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text


def completed_and_stored(run: Run, server: PostgresServer) -> tuple[str, str]:
    """The run ends with exit 0, every trial ok both as reported and as stored, the campaign
    completed and its journal gone; its output."""
    rc, out, err = run.wait()
    no_traceback(out, err)
    assert rc == 0, out + err
    rows = pg_rows(server, "select status, count(*) from trials group by status")
    assert rows == [("ok", TRIALS)] and reported_ok(out) == TRIALS
    assert pg_rows(server, "select status from campaigns") == [("completed",)]
    assert run.journals() == []  # complete and stored: nothing left to replay
    return out, err


def test_a_postgres_restarted_then_down_for_7_s_mid_campaign_loses_nothing(
    ray_cluster, outage_pg, tmp_path: Path
) -> None:
    """One campaign: the server restarted (`pg_ctl restart -m fast`) after the first stored
    trial, then stopped for 7 s after the next (retried at 0.5, 1.5, 3.5 s, back at 7.5)."""
    run = Run(tmp_path, fresh_db(outage_pg, "down7"), ray_cluster.address)
    wait_for(lambda: pg_trials(outage_pg) >= 1, 60, "a first stored trial")
    outage_pg.restart()
    wait_for(lambda: pg_trials(outage_pg) >= 2, 60, "a trial stored after the restart")
    outage_pg.stop()
    down_at = time.monotonic()
    try:
        # Trials go on while the store is down: their records wait in the journal.
        wait_for(lambda: len(run.journal_trials()) >= 3, 30, "trials measured in the outage")
        time.sleep(max(0.0, down_at + 7 - time.monotonic()))
    finally:
        outage_pg.start()
    out, err = completed_and_stored(run, outage_pg)
    assert "failed" in err and "retried for up to 300 s" in err and "is back after" in err
    print(f"restarted, then stopped 7 s: reported ok {reported_ok(out)}, stored {TRIALS}")


def test_a_driver_killed_during_an_outage_loses_nothing_after_resume(
    ray_cluster, outage_pg, tmp_path: Path
) -> None:
    run = Run(tmp_path, fresh_db(outage_pg, "killed"), ray_cluster.address)
    wait_for(lambda: pg_trials(outage_pg) >= 1, 60, "a first stored trial")
    outage_pg.stop()
    try:
        pg_trials_seen = before = len(run.journal_trials())
        wait_for(lambda: len(run.journal_trials()) >= before + 2, 30, "trials in the outage")
        os.killpg(run.proc.pid, signal.SIGKILL)
        run.proc.wait()
    finally:
        outage_pg.start()
    journaled = run.journal_trials()
    assert len(journaled) > pg_trials(outage_pg)
    cid = journaled[0]["campaign_id"]
    rc, out, err = run.again("--resume", cid)
    no_traceback(out, err)
    assert rc == 0, out + err
    assert f"of {cid} from its journal" in err
    stored = {
        (k, a, s)
        for k, a, s in pg_rows(outage_pg, "select trial_key, attempt, status from trials") or []
    }
    # Every trial measured before the kill is stored as it was measured (attempt 1, ok),
    # none measured again; the resume ran only the rest.
    assert {(r["trial_key"], r["attempt"], r["status"]) for r in journaled} <= stored
    assert len(stored) == TRIALS and {s for _, _, s in stored} == {"ok"}
    assert pg_rows(outage_pg, "select status from campaigns") == [("completed",)]
    print(
        f"SIGKILL in outage: journaled {len(journaled)}, stored before resume "
        f"{pg_trials_seen}, after resume {len(stored)} (all ok)"
    )


@pytest.fixture
def small_tmpfs() -> Iterator[Path]:
    """A 16 MiB tmpfs of this test's own, unmounted after it."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    where = Path(tempfile.mkdtemp(prefix="hfull", dir="/tmp"))
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)], capture_output=True
    )
    if made.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
        where.rmdir()


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (65536, 1):
            try:
                while f.write(b"\0" * chunk):
                    pass
            except OSError:
                pass
    return filler


def test_sqlite_on_a_full_disk_stops_with_one_line_and_resumes_from_the_journal(
    ray_cluster, small_tmpfs: Path, tmp_path: Path
) -> None:
    db = small_tmpfs / "r.sqlite"
    run = Run(tmp_path, str(db), ray_cluster.address, "--store-retry", "2")

    def stored() -> int:
        try:
            with sqlite3.connect(db, timeout=5) as c:
                return c.execute("select count(*) from trials").fetchone()[0]
        except sqlite3.Error:
            return 0

    wait_for(lambda: stored() >= 1, 60, "a first stored trial")
    filler = fill(small_tmpfs)
    rc, out, err = run.wait()
    no_traceback(out, err)
    assert rc == 1, out + err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "database or disk is full" in errors[0], err
    assert "has failed for" in errors[0] and "kept in" in errors[0]
    hint = next(line for line in err.splitlines() if "--resume" in line)
    assert "--store-retry 2 --resume" in hint  # the options this run was given, kept
    cid = hint.split("--resume ")[1].split()[0]
    journaled = run.journal_trials()
    filler.unlink()
    stored_before = stored()
    assert len(journaled) > stored_before

    # `db replay` stores the journal's trials without running anything.
    env = {**os.environ, "HARNESS_STATE_DIR": str(run.state)}
    replay = [sys.executable, "-m", "harness", "db", "replay", "--db", str(db)]
    first = subprocess.run(replay, env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    pending = len(journaled) - stored_before
    assert f"{cid}: {pending} trial(s) stored, 0 already there; marked interrupted" in first.stdout
    assert stored() == len(journaled)

    rc, out, err = run.again("--resume", cid)
    no_traceback(out, err)
    assert rc == 0, out + err
    with sqlite3.connect(db) as c:
        rows = set(c.execute("select trial_key, attempt, status from trials"))
        status = c.execute("select status from campaigns").fetchall()
    assert {(r["trial_key"], r["attempt"], r["status"]) for r in journaled} <= rows
    assert len(rows) == TRIALS and {s for _, _, s in rows} == {"ok"}
    assert status == [("completed",)]
    print(
        f"full disk: journaled {len(journaled)}, stored before resume {stored_before}, "
        f"after resume {len(rows)} (all ok)"
    )


def test_an_unwritable_journal_folder_is_one_line_before_anything(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from harness.cli.app import app

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    pb = tmp_path / "pb.yaml"
    pb.write_text(PLAYBOOK)
    db = tmp_path / "r.sqlite"
    result = CliRunner().invoke(
        app, ["run", str(pb), "--db", str(db)], env={"HARNESS_STATE_DIR": str(blocker)}
    )
    assert result.exit_code == 2, result.output + result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: cannot write the campaign journal folder {blocker / 'journal'}: Not a "
        "directory (set HARNESS_STATE_DIR to a writable folder)"
    ]
    assert not db.exists()
