"""`harness cluster up/down HOSTS_FILE` against real sshd in the bed's hosts (tests/sshbed.py:
key auth made here, a client config file as a user's ~/.ssh/config would be): hosts that
cannot take part are named before anything starts; up starts Ray with token auth on, twice
is fine, a campaign runs on it, and down leaves nothing of it behind."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bare_env import env_without_harness
from tests.netbed import NetBed, netbed
from tests.netbed import unavailable as no_bed
from tests.sshbed import ssh_bed
from tests.sshbed import unavailable as no_ssh

pytestmark = pytest.mark.ray
HARNESS = str(Path(sys.executable).with_name("harness"))
PLAYBOOK = """
campaign: {name: sshhosts}
defaults: {warmup_iterations: 1, min_repetitions: 3, min_duration_s: 0, max_duration_s: 5,
           timeout_s: 120}
benchmarks:
  - {name: stream, workload: memory.stream, each: true, params: {device: cpu, op: triad,
     size_mib: 4}}
"""


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NetBed, Path]]:
    why = no_bed() or no_ssh()
    if why:
        pytest.skip(why)
    with netbed(3, ray=False) as made:
        yield made, ssh_bed(made, made.hosts[:2])  # h3 has no sshd: unreachable


def harness(bed: NetBed, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [HARNESS, *args], capture_output=True, text=True, timeout=300, cwd=bed.folder,
        env={**os.environ, "XDG_DATA_HOME": str(bed.folder / "data"), **(env or {})},
    )  # fmt: skip


def hosts_file(bed: NetBed, config: Path, name: str, hosts: list[dict]) -> Path:
    path = bed.folder / f"{name}.yaml"
    spec = {"name": name, "python": sys.executable, "ssh_config": str(config), "hosts": hosts}
    path.write_text(json.dumps(spec))  # YAML is a superset of JSON
    return path


def other_ray(folder: Path) -> Path:
    """An environment whose Ray reads as 2.0.0 (its metadata, as pip shows it)."""
    python = env_without_harness(folder, hide=("ray",))
    site = folder / Path(sysconfig.get_paths()["purelib"]).relative_to(sys.prefix)
    meta = site / "ray-2.0.0.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: ray\nVersion: 2.0.0\n")
    return python


def test_hosts_that_cannot_take_part_are_named_before_anything_starts(
    bed: tuple[NetBed, Path], tmp_path: Path
) -> None:
    made, config = bed
    path = hosts_file(made, config, "bad", [
        {"ssh": "h1", "address": made.hosts[0].address, "python": "/usr/bin/python3"},
        {"ssh": "h2", "address": made.hosts[1].address, "python": str(other_ray(tmp_path))},
        {"ssh": "h3", "address": made.hosts[2].address},
    ])  # fmt: skip
    refused = harness(made, "cluster", "up", str(path))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    from harness.cluster.fingerprint import ray_version

    lines = refused.stderr.strip().splitlines()
    assert lines[0] == (
        f"error: host h1: no Ray in /usr/bin/python3 (install ray=={ray_version()} there)"
    )
    assert lines[1].startswith(f"error: host h2: Ray 2.0.0 in {tmp_path}"), lines
    assert lines[1].endswith(f"the driver's is {ray_version()}"), lines
    assert lines[2].startswith("error: host h3: unreachable over SSH: ssh: connect to host"), lines
    assert lines[3:] == ["error: nothing was started"], lines
    assert not made.leftovers(keep=("sshd",))


def test_up_twice_run_down_leaves_nothing(bed: tuple[NetBed, Path]) -> None:
    made, config = bed
    h1, h2 = made.hosts[:2]
    path = hosts_file(made, config, "lab", [
        {"ssh": "h1", "address": h1.address, "cpus": 1, "labels": {"rack": "a"}},
        {"ssh": "root@h2", "address": h2.address, "cpus": 1, "labels": {"rack": "b"}},
    ])  # fmt: skip
    t0 = time.monotonic()
    first = harness(made, "cluster", "up", str(path))
    took_up = time.monotonic() - t0
    assert first.returncode == 0, first.stdout + first.stderr
    assert "h1: started: process group" in first.stdout, first.stdout
    assert "root@h2: started: process group" in first.stdout, first.stdout
    again = harness(made, "cluster", "up", str(path))
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count(": already up: process group") == 2, again.stdout
    token = made.folder / "data" / "harness" / "clusters" / "lab" / "auth_token"
    assert oct(token.stat().st_mode & 0o777) == "0o600"
    assert token.read_text() not in first.stdout + first.stderr  # never printed

    pb = made.folder / "ssh.yaml"
    pb.write_text(PLAYBOOK)
    db = made.folder / "ssh.sqlite"
    # Token auth is on: the driver joins with the token file `up` printed, from host h1.
    joined = made.run(
        h1, HARNESS, "run", str(pb), "--db", str(db), "--address", f"{h1.address}:6379",
        "--no-progress", env={"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)},
        timeout=300,
    )  # fmt: skip
    assert joined.returncode == 0, joined.stdout + joined.stderr
    with sqlite3.connect(db) as con:
        nodes = con.execute(
            "SELECT n.hostname, json_extract(c.labels, '$.rack') FROM campaign_nodes c "
            "JOIN nodes n ON n.id = c.node_id ORDER BY n.hostname"
        ).fetchall()
    assert nodes == [("h1", "a"), ("h2", "b")], nodes
    t0 = time.monotonic()
    stopped = harness(made, "cluster", "down", str(path))
    took_down = time.monotonic() - t0
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.count(": stopped: process group") == 2, stopped.stdout
    assert not made.leftovers(keep=("sshd",))
    print(f"cluster up: {took_up:.1f} s, down: {took_down:.1f} s")
    twice = harness(made, "cluster", "down", str(path))
    assert twice.stdout.count(": not up") == 2, twice.stdout
