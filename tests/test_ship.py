"""Harness shipped with the job (harness/cluster/ship.py): Ray nodes started from a Python
environment without harness (tests/bare_env.py) run a campaign from a driver that has it,
on separate hosts (tests/netbed.py); a node that lacks a workload's library fails that
workload's trial with the reason, not the campaign."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bare_env import env_without_harness
from tests.netbed import NetBed, netbed, unavailable, wait_for_port

pytestmark = pytest.mark.ray
HARNESS = str(Path(sys.executable).with_name("harness"))
SERVER_PORT = 18080

PLAYBOOK = """
campaign: {{name: shipped}}
defaults: {{warmup_iterations: 1, min_repetitions: 3, min_duration_s: 0, max_duration_s: 10,
           timeout_s: 120}}
benchmarks:
  - {{name: stream, workload: memory.stream, each: true,
     params: {{device: cpu, op: triad, size_mib: 4}}}}
  - {{name: load, workload: inference.serving, each: true,
     params: {{url: "http://{server}:{port}", scenario: single_stream, prompt_len: 16,
              output_len: 4, duration_s: 0.5, min_requests: 3}}}}
"""


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetBed]:
    why = unavailable()
    if why:
        pytest.skip(why)
    envs = tmp_path_factory.mktemp("envs")
    bare = env_without_harness(envs / "bare")
    # h2's environment lacks aiohttp too: the serving load's library (Ray does without it).
    no_aiohttp = env_without_harness(envs / "noaio", hide=("aiohttp",))
    with netbed(2, python={0: str(bare), 1: str(no_aiohttp)}) as made:
        yield made


def test_nodes_without_harness_run_the_shipped_code(bed: NetBed) -> None:
    h1 = bed.hosts[0]
    bed.start(h1, HARNESS, "serve-model", "--engine", "synthetic", "--host", h1.address,
              "--port", str(SERVER_PORT), log=bed.folder / "serve.log")  # fmt: skip
    wait_for_port(h1, SERVER_PORT, 60)
    pb = bed.folder / "shipped.yaml"
    pb.write_text(PLAYBOOK.format(server=h1.address, port=SERVER_PORT))
    db = bed.folder / "shipped.sqlite"
    ran = bed.run(
        h1, HARNESS, "run", str(pb), "--db", str(db), "--address", bed.address, "--no-progress",
        env={"RAY_AUTH_MODE": "disabled"}, timeout=300,
    )  # fmt: skip
    output = ran.stdout + ran.stderr
    assert ran.returncode == 1, output  # the one trial that cannot run fails; the rest ran
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT t.benchmark, n.hostname, t.status, t.failure_reason FROM trials t "
            "JOIN nodes n ON n.id = t.node_id ORDER BY t.benchmark, n.hostname"
        ).fetchall()
        versions = con.execute(
            "SELECT DISTINCT json_extract(facts, '$.harness'), json_extract(facts, "
            "'$.harness_code') FROM nodes"
        ).fetchall()
    by = {(b, h): (s, r) for b, h, s, r in rows}
    assert by[("stream", "h1")][0] == "ok" and by[("stream", "h2")][0] == "ok", rows
    assert by[("load", "h1")][0] == "ok", rows
    status, reason = by[("load", "h2")]
    assert status == "failed", rows
    assert "inference.serving cannot be imported on this node" in reason, reason
    assert "No module named 'aiohttp'" in reason, reason
    # The nodes report the driver's version: the code Ray shipped, not an installed one.
    from harness import __version__
    from harness.cluster.ship import code_hash

    assert versions == [(__version__, code_hash())], versions


K8S_PLAYBOOK = """
campaign: {name: rayjob}
defaults: {warmup_iterations: 1, min_repetitions: 3, min_duration_s: 0, max_duration_s: 5,
           timeout_s: 120}
benchmarks:
  - {name: stream, workload: memory.stream, each: true,
     params: {device: cpu, op: triad, size_mib: 4}}
"""


def test_the_rayjob_entrypoint_runs_against_the_bed(bed: NetBed) -> None:
    """`harness k8s render`'s entrypoint, run as KubeRay runs it on the head (a shell line,
    RAY_ADDRESS set by Ray's job submission, the playbook where its ConfigMap is mounted,
    the store's URL from the Secret's variable), against the bed's nodes."""
    import json
    import os

    import yaml

    source = bed.folder / "k8s-source.yaml"
    source.write_text(K8S_PLAYBOOK)
    rendered = subprocess.run(
        [HARNESS, "k8s", "render", str(source), "--nodes", "2", "--image", "lab/harness:1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    config_map, job = yaml.safe_load_all(rendered.stdout)
    mounted = bed.folder / "mounted-playbook.yaml"
    mounted.write_text(config_map["data"]["playbook.yaml"])
    db = bed.folder / "rayjob.sqlite"
    ran = bed.run(
        bed.hosts[0], "bash", "-c", job["spec"]["entrypoint"], timeout=300,
        env={"HARNESS_PLAYBOOK": str(mounted), "RAY_ADDRESS": bed.address,
             "HARNESS_DB_URL": f"sqlite:///{db}", "RAY_AUTH_MODE": "disabled",
             "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT n.hostname, t.status FROM trials t JOIN nodes n ON n.id = t.node_id "
            "ORDER BY n.hostname"
        ).fetchall()
    assert rows == [("h1", "ok"), ("h2", "ok")], json.dumps(rows)
