"""A filter that names nothing in the store is exit 2 with a did-you-mean, not "0 records";
real names whose combination is empty still give 0 records and exit 0."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli.app import app
from results_db import ResultStore, sqlite_url
from tests.test_store import campaign, node, trial

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "r.sqlite"
    store = ResultStore(sqlite_url(path))
    store.start_campaign(campaign())
    store.record_trial(trial(store, store.upsert_node(node())))
    store.engine.dispose()
    return str(path)


def query(db: str, *args: str):
    result = runner.invoke(app, ["results", "query", "--db", db, *args])
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (("--workload", "memory.steam"), "did you mean 'memory.stream'?"),
        (("--metric", "bandwith"), "did you mean 'bandwidth'?"),
        (("--where", "op=trad"), "did you mean 'triad'?"),
        (("--where", "sise_mib=64"), "did you mean 'size_mib'?"),
        (("--where", "node.hostname=hh"), "did you mean 'h'?"),
        (("--campaign", "c2"), "known: c1"),
    ],
)
def test_a_filter_naming_nothing_is_exit_2_with_a_suggestion(
    db: str, args: tuple[str, ...], hint: str
) -> None:
    result = query(db, *args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and hint in lines[0], result.output


def test_real_names_whose_combination_is_empty_are_zero_records_not_an_error(db: str) -> None:
    result = query(db, "--where", "op=triad", "--status", "failed")
    assert result.exit_code == 0, result.output
    assert "0 record(s)" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ("--workload", "memory.stream"),
        ("--where", "op=triad"),
        ("--where", "size_mib=64"),  # a number typed as an int matches the stored 64.0
        ("--workload", "memory.*"),
        ("--where", "op=tri*"),
    ],
)
def test_right_names_and_globs_still_find_the_trial(db: str, args: tuple[str, ...]) -> None:
    result = query(db, *args, "--format", "json")
    assert result.exit_code == 0, result.output
    assert '"bandwidth"' in result.output


def test_export_takes_the_same_check(db: str, tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    result = runner.invoke(
        app, ["results", "export", "--db", db, "-o", str(out), "--workload", "memory.steam"]
    )
    assert result.exit_code == 2 and "did you mean 'memory.stream'?" in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("name", "reader"), [("x.parquet", "parquet"), ("x.json", "json"), ("x.csv", "csv")]
)
def test_export_writes_the_format_its_extension_names(
    db: str, tmp_path: Path, name: str, reader: str
) -> None:
    import pandas as pd

    out = tmp_path / name
    result = runner.invoke(app, ["results", "export", "--db", db, "-o", str(out)])
    assert result.exit_code == 0, result.output
    if reader == "parquet":
        assert out.read_bytes()[:4] == b"PAR1"  # Parquet's magic number, not CSV text
        frame = pd.read_parquet(out)
    elif reader == "json":
        frame = pd.read_json(out, orient="records")
    else:
        frame = pd.read_csv(out)
    assert frame["metric"].tolist() == ["bandwidth"]


def test_export_format_option_wins_and_an_unknown_extension_is_refused(
    db: str, tmp_path: Path
) -> None:
    out = tmp_path / "x.data"
    refused = runner.invoke(app, ["results", "export", "--db", db, "-o", str(out)])
    assert refused.exit_code == 2 and "give --format" in refused.output and not out.exists()
    ok = runner.invoke(app, ["results", "export", "--db", db, "-o", str(out), "--format", "csv"])
    assert ok.exit_code == 0 and out.read_text().startswith("campaign,")


@pytest.mark.parametrize("what", ["metrics", "samples", "telemetry"])
def test_export_of_a_missing_campaign_is_exit_2(db: str, tmp_path: Path, what: str) -> None:
    out = tmp_path / "x.csv"
    result = runner.invoke(
        app, ["results", "export", "--db", db, "-o", str(out), "--what", what, "--campaign", "nope"]
    )
    assert result.exit_code == 2 and "no campaign 'nope'" in result.output
    assert not out.exists()


def test_export_takes_the_query_filters(db: str, tmp_path: Path) -> None:
    import pandas as pd

    out = tmp_path / "s.csv"
    args = ["results", "export", "--db", db, "-o", str(out), "--what", "samples"]
    assert runner.invoke(app, [*args, "--where", "op=triad"]).exit_code == 0
    assert pd.read_csv(out)["value"].tolist() == [1.0, 2.0, 3.0]
    empty = runner.invoke(app, [*args, "--where", "op=triad", "--status", "failed"])
    assert empty.exit_code == 0 and "0 samples row(s)" in empty.output


def test_an_unknown_workload_in_a_playbook_gets_a_suggestion(tmp_path: Path) -> None:
    pb = tmp_path / "p.yaml"
    pb.write_text("campaign: {name: t}\nbenchmarks:\n  - workload: memory.steam\n")
    result = runner.invoke(app, ["playbook", "validate", str(pb)])
    assert result.exit_code == 2
    assert "did you mean 'memory.stream'" in result.output
