"""`harness slurm submit` against a real Slurm (tests/slurmbed.py: Debian's slurmctld, a
slurmd in each of three bed hosts, munge): jobs start Ray on their nodes, run the campaign
into the store, and stop exactly what they started, also on scancel."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bare_env import env_without_harness
from tests.netbed import NetBed, netbed
from tests.netbed import unavailable as no_bed
from tests.slurmbed import SlurmBed, slurm_bed
from tests.slurmbed import unavailable as no_slurm

pytestmark = pytest.mark.ray
HARNESS = str(Path(sys.executable).with_name("harness"))

QUICK = """
campaign: {name: slurmjob}
defaults: {warmup_iterations: 1, min_repetitions: 3, min_duration_s: 0, max_duration_s: 5,
           timeout_s: 120}
benchmarks:
  - {name: stream, workload: memory.stream, each: true, params: {device: cpu, op: triad,
     size_mib: 4}}
"""
# Long enough to be cancelled in the middle: 4 trials a node of about 1.5 s each, the
# test plugin's sleeping workload (QUICK runs a real kernel on the nodes; this one need not
# burn the CPU to be interrupted).
LONG = """
campaign: {name: slurmlong}
defaults: {warmup_iterations: 1, min_repetitions: 3, min_duration_s: 1, max_duration_s: 3,
           timeout_s: 120}
benchmarks:
  - {name: sleep, workload: test.flaky, each: true, params: {sleep_s: 0.05,
     size: [1000, 2000, 3000, 4000]}}
"""


@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmBed]:
    why = no_bed() or no_slurm()
    if why:
        pytest.skip(why)
    with netbed(3, ray=False) as bed, slurm_bed(bed) as made:
        yield made


def submit(slurm: SlurmBed, playbook: str, *args: str) -> str:
    bed: NetBed = slurm.bed
    pb = bed.folder / f"pb{abs(hash((playbook, args))) % 10**6}.yaml"
    pb.write_text(playbook)
    done = subprocess.run(
        [HARNESS, "slurm", "submit", str(pb), "--db", str(bed.folder / "slurm.sqlite"),
         "--output-dir", str(bed.folder / "jobs"), "--cpus-per-node", "1", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, **slurm.env},
        cwd=bed.folder,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("submitted Slurm job "), done.stdout
    return first.split()[-1]


def output(slurm: SlurmBed, job: str) -> str:
    path = slurm.bed.folder / "jobs" / f"harness-{job}.out"
    return path.read_text() if path.exists() else ""


def query(slurm: SlurmBed, sql: str, *args: object) -> list[tuple]:
    path = slurm.bed.folder / "slurm.sqlite"
    if not path.exists():  # connecting would make an empty one
        return []
    with sqlite3.connect(path) as con:
        try:
            return con.execute(sql, args).fetchall()
        except sqlite3.OperationalError:  # the job has not made its tables yet
            return []


def ours_left(bed: NetBed) -> list[str]:
    """Processes in the bed's hosts other than slurmd: Ray's, harness's, job shells."""
    return bed.leftovers(keep=("slurmd",))


def test_jobs_run_campaigns_on_slurm_nodes_side_by_side(slurm: SlurmBed) -> None:
    """A 3-node job and a 2-node job on the same nodes at once: each has its own Ray
    (ports and temp folder from its job id), stores trials under Slurm's node names, and
    leaves nothing behind."""
    t0 = time.monotonic()
    three = submit(slurm, QUICK, "--nodes", "3")
    two = submit(slurm, QUICK, "--nodes", "2", "--job-name", "second")
    for job in (three, two):
        slurm.wait_gone(job, 240)
    print(f"two jobs, submitted to both ended: {time.monotonic() - t0:.1f} s")
    for job in (three, two):
        text = output(slurm, job)
        assert f"harness: Slurm job {job} ended (0)" in text, text
        assert "campaign slurmjob-" in text, text
        assert (slurm.bed.folder / "jobs" / f"harness-{job}.sbatch").exists()
    ports = {
        job: output(slurm, job).split(": Ray at ")[1].split(",")[0].split(":")[1]
        for job in (three, two)
    }
    assert ports[three] != ports[two], ports
    campaigns = query(slurm, "SELECT id, status, cluster FROM campaigns ORDER BY created_at")
    assert len(campaigns) == 2 and {c[1] for c in campaigns} == {"completed"}, campaigns
    assert {c[2].split("(slurm job ")[1].split(",")[0] for c in campaigns} == {three, two}
    hosts = query(
        slurm,
        "SELECT t.campaign_id, n.hostname, t.status FROM trials t JOIN nodes n ON n.id = t.node_id",
    )
    by_campaign: dict[str, set[str]] = {}
    for campaign, hostname, status in hosts:
        assert status == "ok", hosts
        by_campaign.setdefault(campaign, set()).add(hostname)
    assert sorted(by_campaign.values(), key=len) == [{"h1", "h2"}, {"h1", "h2", "h3"}], hosts
    assert not ours_left(slurm.bed)


def test_scancel_stops_everything_and_leaves_a_resumable_campaign(slurm: SlurmBed) -> None:
    job = submit(slurm, LONG, "--nodes", "2")  # a head and a worker: Ray stops on both
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # a trial stored: the campaign is under way
        if query(slurm, "SELECT 1 FROM trials t JOIN campaigns c ON c.id = t.campaign_id "
                 "WHERE c.name = 'slurmlong'"):  # fmt: skip
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"no trial stored: {output(slurm, job)}")
    t0 = time.monotonic()
    cancelled = subprocess.run(
        [HARNESS, "slurm", "cancel", job], capture_output=True, text=True, timeout=120,
        env={**os.environ, **slurm.env},
    )  # fmt: skip
    assert cancelled.returncode == 0, cancelled.stderr
    # The batch shell alone was signalled, and the job ended through it, not by scancel.
    assert cancelled.stdout.startswith(f"stopped Slurm job {job} "), cancelled.stdout
    while time.monotonic() - t0 < 30 and ours_left(slurm.bed):
        time.sleep(0.5)
    print(output(slurm, job))  # whole, where a failure's message would be cut short
    assert not ours_left(slurm.bed), ours_left(slurm.bed)
    print(f"cancel to nothing left: {time.monotonic() - t0:.1f} s")
    ((campaign, status),) = query(
        slurm, "SELECT id, status FROM campaigns WHERE name = 'slurmlong'"
    )
    assert status == "interrupted", (status, output(slurm, job))
    stored = query(slurm, "SELECT count(*) FROM trials WHERE campaign_id = ?", campaign)[0][0]
    assert 0 < stored < 8
    # The job id leads back to it; a second job resumes it to the end.
    shown = subprocess.run(
        [HARNESS, "slurm", "status", job, "--output-dir", str(slurm.bed.folder / "jobs")],
        capture_output=True, text=True, timeout=60, env={**os.environ, **slurm.env},
    )  # fmt: skip
    assert f"campaign: {campaign}" in shown.stdout, shown.stdout
    again = submit(slurm, LONG, "--nodes", "2", "--run-arg=--resume", f"--run-arg={campaign}")
    slurm.wait_gone(again, 240)
    assert "ended (0)" in output(slurm, again), output(slurm, again)
    assert query(slurm, "SELECT status FROM campaigns WHERE id = ?", campaign) == [("completed",)]
    assert not ours_left(slurm.bed)


def test_a_node_without_harness_fails_the_job_in_one_line(slurm: SlurmBed, tmp_path: Path) -> None:
    bare = env_without_harness(tmp_path / "bare")
    job = submit(slurm, QUICK, "--nodes", "2", "--python", str(bare))
    slurm.wait_gone(job, 60)
    errors = [x for x in output(slurm, job).splitlines() if x.startswith("error:")]
    assert errors == [
        f"error: node h1: no harness in {bare}, where the campaign's driver runs "
        "(install it there, or --python)"
    ], output(slurm, job)
    assert not ours_left(slurm.bed)
