"""CLI through Typer's runner: listings, validation, and bad input (one line, exit 2)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli.app import app

runner = CliRunner()
SMOKE = Path(__file__).parent.parent / "playbooks" / "smoke.yaml"


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output + result.stderr
    return result


def test_workloads_json_lists_params_and_metric_units() -> None:
    result = invoke("workloads", "--format", "json")
    assert result.exit_code == 0
    by_name = {w["name"]: w for w in json.loads(result.stdout)}
    assert {"memory.stream", "kernel.gemm", "test.flaky"} <= set(by_name)
    gemm = by_name["kernel.gemm"]
    assert {p["name"] for p in gemm["params"]} >= {"m", "n", "k", "dtype", "device"}
    assert {(m["name"], m["unit"], m["higher_is_better"]) for m in gemm["metrics"]} == {
        ("throughput", "TFLOP/s", True),
        ("time", "ms", False),
    }


def test_workloads_table_shows_units() -> None:
    result = invoke("workloads")
    assert result.exit_code == 0 and "[GB/s]" in result.stdout and "[ms]" in result.stdout


def test_validate_good_playbook() -> None:
    result = invoke("playbook", "validate", str(SMOKE))
    assert result.exit_code == 0 and "valid" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["playbook", "validate", "nope.yaml"],
            "error: nope.yaml: cannot read: No such file or directory",
        ),
        (
            ["playbook", "validate", str(SMOKE), "--set", "benchmarks.0.params.op=tirad"],
            f"error: {SMOKE}: benchmarks[0].params.op: Input should be 'copy', 'scale', 'add' or 'triad' (got 'tirad')",
        ),
        (
            ["run", str(SMOKE), "--set", "defaults.timeout_s=-1"],
            f"error: {SMOKE}: defaults.timeout_s: Input should be greater than 0 (got -1)",
        ),
        (
            ["run", str(SMOKE), "--set", "nonsense"],
            "error: --set 'nonsense': expected KEY.PATH=VALUE",
        ),
        (
            ["results", "query", "--db", "postgresql+psycopg://u:pw-secret@127.0.0.1:1/x"],
            "error: cannot connect to postgresql+psycopg://u:***@127.0.0.1:1/x:",
        ),
        (
            ["results", "campaigns", "--db", "nosuchdriver://x"],
            "error: cannot use database URL 'nosuchdriver://x'",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines
    assert "pw-secret" not in result.output + result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["results", "campaigns", "--format", "bogus"],
            "error: harness results campaigns: Invalid value for '--format': Value error, "
            "'bogus' is not one of 'table', 'csv', 'json'. (see harness results campaigns --help)",
        ),
        (["run"], "error: harness run: Missing argument 'playbook'. (see harness run --help)"),
        (["run", "x.yaml", "--bogus"], "error: harness run: No such option: --bogus"),
        (["bogus"], "error: harness: No such command 'bogus'."),
    ],
)
def test_bad_usage_is_one_line_and_exit_2_from_the_console_script(
    args: list[str], message: str
) -> None:
    """Click's own report (a usage line, a hint, a box) becomes one line in the console
    script users run; help and exit codes are left as they were."""
    harness = str(Path(sys.executable).with_name("harness"))
    got = subprocess.run([harness, *args], capture_output=True, text=True, timeout=60)
    assert got.returncode == 2, got.stderr
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines


def test_help_and_a_bare_group_keep_their_output_and_exit_codes() -> None:
    harness = str(Path(sys.executable).with_name("harness"))
    bare = subprocess.run([harness, "results"], capture_output=True, text=True, timeout=60)
    assert bare.returncode == 2 and "campaigns" in bare.stdout + bare.stderr
    helped = subprocess.run([harness, "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "results" in helped.stdout


def test_bad_playbook_stops_before_anything_is_stored(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    pb = tmp_path / "bad.yaml"
    pb.write_text("campaign: {name: x}\nbenchmarks: [{workload: kernel.gemm, params: {m: -1}}]\n")
    result = invoke("run", str(pb), "--db", str(db))
    assert result.exit_code == 2
    assert (
        "benchmarks[0].params.m: Input should be greater than or equal to 1 (got -1)"
        in result.stderr
    )
    assert not db.exists()


def test_results_on_a_new_database_and_unknown_campaign(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    assert invoke("db", "upgrade", "--db", str(db)).exit_code == 0
    result = invoke("results", "campaigns", "--db", str(db), "--format", "json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    result = invoke("results", "show", "nope", "--db", str(db))
    assert result.exit_code == 2 and result.stderr.startswith("error: no campaign 'nope'")
    result = invoke("results", "query", "--db", str(db), "--where", "node.nope=1")
    assert result.exit_code == 2 and "unknown node field 'nope'" in result.stderr
    result = invoke("results", "query", "--db", str(db), "--status", "weird")
    assert result.exit_code == 2 and "status must be one of" in result.stderr


def test_db_url_from_environment(tmp_path: Path, monkeypatch) -> None:
    db = tmp_path / "env.sqlite"
    monkeypatch.setenv("HARNESS_DB_URL", f"sqlite:///{db}")
    assert invoke("db", "upgrade").exit_code == 0
    assert sqlite3.connect(db).execute("select count(*) from alembic_version").fetchone()[0] == 1


def test_existing_results_survive_a_failed_command(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    invoke("db", "upgrade", "--db", str(db))
    dump = lambda: list(sqlite3.connect(db).iterdump())  # noqa: E731
    before = dump()
    pb = tmp_path / "bad.yaml"
    pb.write_text("campaign: [")
    assert invoke("run", str(pb), "--db", str(db)).exit_code == 2
    assert (
        invoke(
            "run", str(SMOKE), "--db", str(db), "--resume", "nope", "--address", "127.0.0.1:1"
        ).exit_code
        == 2
    )
    assert dump() == before
