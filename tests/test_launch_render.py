"""What `harness slurm submit --print` renders, without a Slurm: a script bash accepts, the
allocation asked for, no credential in it, and a warning before short time limits that
leaves the campaign time to stop."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.launch.slurm import grace_s, time_limit_s

HARNESS = str(Path(sys.executable).with_name("harness"))
SMOKE = Path(__file__).parent.parent / "playbooks" / "smoke.yaml"


@pytest.mark.parametrize(
    ("value", "seconds", "grace"),
    [("10", 600, 60), ("1:30", 90, 22), ("2:00:00", 7200, 60), ("1-2:30", 95400, 60),
     ("1-0", 86400, 60), ("2", 120, 30), ("soon", None, 60), (None, None, 60)],
)  # fmt: skip
def test_time_limits_and_the_warning_before_them(value, seconds, grace) -> None:
    assert time_limit_s(value) == seconds
    assert grace_s(value) == grace


def test_the_printed_script_is_bash_and_holds_no_credential(tmp_path: Path) -> None:
    url = "postgresql+psycopg://bench:s3cret-pw@db.lab/results"
    done = subprocess.run(
        [HARNESS, "slurm", "submit", str(SMOKE), "--nodes", "4", "--time", "2", "--partition",
         "gpu", "--gpus-per-node", "8", "--cpus-per-node", "32", "--db", url, "--print",
         "--set", "defaults.timeout_s=60", "--output-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    script = done.stdout
    assert "s3cret" not in script and "db.lab" not in script
    for line in ("#SBATCH --nodes=4", "#SBATCH --gpus-per-node=8", "#SBATCH --cpus-per-task=32",
                 "#SBATCH --partition=gpu", "#SBATCH --time=2", "#SBATCH --signal=B:TERM@30",
                 f"#SBATCH --output={tmp_path}/harness-%j.out"):  # fmt: skip
        assert line in script.splitlines(), line
    assert "RUN_ARGS=(--set defaults.timeout_s=60)" in script
    assert "ray stop" not in script.replace("`ray stop`", "")  # never every Ray of the user
    checked = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert not list(tmp_path.iterdir())  # --print submits and keeps nothing


def test_a_bad_playbook_is_refused_before_sbatch(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("campaign: {name: x}\nbenchmarks: []\n")
    done = subprocess.run([HARNESS, "slurm", "submit", str(bad), "--print"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: ")


def test_a_bad_hosts_file_is_one_line_per_problem(tmp_path: Path) -> None:
    """An SSH option smuggled in as a host (ssh would run its ProxyCommand), an unknown key
    and a host listed twice: refused before any SSH is made."""
    bad = tmp_path / "hosts.yaml"
    bad.write_text("hosts:\n  - {ssh: '-oProxyCommand=touch /tmp/x'}\n  - {ssh: h2, gpu: 8}\n")
    done = subprocess.run([HARNESS, "cluster", "up", str(bad)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith(f"error: {bad}: hosts.0.ssh: Value error, expected a host name")
    assert lines[1] == f"error: {bad}: hosts.1.gpu: Extra inputs are not permitted"
    twice = tmp_path / "twice.yaml"
    twice.write_text("hosts: [{ssh: h1}, {ssh: h1}]\n")
    done = subprocess.run([HARNESS, "cluster", "down", str(twice)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {twice}: hosts listed twice: h1"
