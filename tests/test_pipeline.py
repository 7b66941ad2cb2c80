"""One campaign pipeline for `harness run` and `--dry-run`: the same plan, the same refusals,
the same order (issue 22, point 1)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli.app import app

pytestmark = pytest.mark.ray
runner = CliRunner()

SERVING = (
    "campaign: {{name: {name}}}\n"
    "{extra}"
    "benchmarks:\n"
    "  - workload: inference.serving\n"
    "    params: {{url: 'http://127.0.0.1:9/v1', concurrency: {concurrency}, min_requests: 4,"
    " output_len: 4}}\n"
    "{ladder}"
)


def write(tmp_path: Path, name: str, **fields: str) -> Path:
    fields = {"extra": "", "ladder": "", "concurrency": "2", **fields}
    path = tmp_path / f"{name}.yaml"
    path.write_text(SERVING.format(name=name, **fields))
    return path


def test_a_price_table_missing_the_hardware_is_refused_by_the_dry_run_as_by_the_run(
    ray_cluster, tmp_path: Path
) -> None:
    path = write(tmp_path, "priced", extra="prices: {currency: EUR, per_hour: {'*H100*': 2.0}}\n")
    db = tmp_path / "r.db"
    common = ["--db", str(db), "--address", ray_cluster.address]
    dry = runner.invoke(app, ["run", str(path), *common, "--dry-run"])
    real = runner.invoke(app, ["run", str(path), *common, "--skip-preflight"])
    assert dry.exit_code == real.exit_code == 2, dry.output + dry.stderr
    assert "prices: no entry for" in dry.stderr
    assert dry.stderr == real.stderr  # the same refusal, word for word
    assert "trial(s)" not in dry.stdout  # no plan shown that the run would refuse
    assert sqlite3.connect(db).execute("select count(*) from campaigns").fetchone()[0] == 0


def test_a_ladder_s_dry_run_lists_its_steps_in_climbing_order(ray_cluster, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "climb",
        concurrency="[32, 1, 8, 2, 16, 4]",
        ladder="    ladder: {over: concurrency, min_gain: 0.05}\n",
    )
    result = runner.invoke(
        app,
        [
            "run",
            str(path),
            "--dry-run",
            "--wide",
            "--address",
            ray_cluster.address,
            "--db",
            str(tmp_path / "r.db"),
        ],
    )
    assert result.exit_code == 0, result.output + result.stderr
    # Nodes the ladder runs on are each given the whole climb (per node groups), in order.
    steps = [int(s) for s in re.findall(r"concurrency=(\d+)", result.stdout)]
    assert steps and steps == sorted(steps), steps
    assert set(steps) == {1, 2, 4, 8, 16, 32}


def test_version_skew_refuses_other_code_and_notes_mixed_classes() -> None:
    from harness.cluster.inventory import NodeInfo
    from harness.cluster.versions import version_skew

    def node(i: int, **facts) -> NodeInfo:
        base = {"hostname": f"h{i}", "harness": "1.0", "ray": "2.60.0", "python": "3.11.7",
                "torch": "2.13.0", "cuda": None, "driver": None}  # fmt: skip
        return NodeInfo(f"{i:08d}xx", "", {}, {}, {**base, **facts}, hardware_class="cls")

    driver = {"harness": "1.0", "ray": "2.60.0", "python": "3.11.2"}
    refused, mixed = version_skew([node(1), node(2, python="3.11.9")], driver)
    assert refused == [] and mixed == []  # a Python patch release is alike
    refused, mixed = version_skew([node(1), node(2, harness="0.9", python="3.12.1")], driver)
    assert refused == [
        "node h2 (00000002): harness 0.9 (the driver has 1.0), python 3.12.1 (the driver has "
        "3.11.2)"
    ]
    _, mixed = version_skew([node(1), node(2, torch="2.12.0")], driver)
    assert mixed == ["hardware class cls: mixed torch versions: h1=2.13.0, h2=2.12.0"]
