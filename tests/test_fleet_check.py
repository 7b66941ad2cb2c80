"""`harness check`: on a real three-node Ray cluster one node is made slower and the check
names it (exit 1), and names none when the nodes are alike; and on generated history, every
planted outlier is found with no false alarm."""

from __future__ import annotations

import json
import random
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli.app import app
from harness.node.stats import summarize
from results_db import (
    CampaignRecord,
    MetricRecord,
    NodeRecord,
    ResultStore,
    TrialRecord,
    sqlite_url,
)

runner = CliRunner()

PLAYBOOK = """
campaign: {{name: fleet, description: one benchmark on every node}}
defaults:
  warmup_iterations: 1
  min_repetitions: 8
  max_repetitions: 8
  min_duration_s: 0
  timeout_s: 120
  contended_cores: 4  # three Ray nodes share this host's cores: their trials overlap
  telemetry: {{sources: [host]}}
benchmarks:
  - name: sleepy
    workload: test.flaky
    each: true
    params: {{sleep_s: 0.02, size: 10, slow_node: "{slow}", slow_factor: 2.0,
              slow_once: "{once}"}}
"""


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output + result.stderr, result.output + result.stderr
    return result


def run_fleet(
    ray_cluster, tmp_path: Path, db: Path, slow: str, confirm: bool = False, once: Path | str = ""
) -> str:
    path = tmp_path / f"fleet-{slow[:6] or 'none'}.yaml"
    path.write_text(PLAYBOOK.format(slow=slow, once=once))
    more = ["--confirm"] if confirm else []
    result = invoke("run", str(path), "--db", str(db), "--address", ray_cluster.address, *more)
    assert result.exit_code == 0, result.output + result.stderr
    [line] = [
        x for x in result.output.splitlines() if x.startswith("campaign fleet-") and " ok, " in x
    ]
    return line.split()[1].rstrip(":")


@pytest.mark.quiet
@pytest.mark.ray
def test_check_names_the_slow_node_confirms_it_and_none_when_alike(
    ray_cluster, tmp_path: Path
) -> None:
    """Through `harness run` and `harness check`: none named when the nodes are alike; a node
    slow in both readings of `run --confirm` is `high`, re-measured (exit 1); slow again in
    the next campaign without --confirm, its previous campaign confirms it (persists); a
    node slow only in its first reading is `transient`, exit 0, and exit 1 with --strict."""
    db = tmp_path / "r.sqlite"
    slow, once = ray_cluster.worker_ids
    alike = run_fleet(ray_cluster, tmp_path, db, slow="")
    # A 15% floor: sleeps on a loaded 2-core CI machine wake late by up to a millisecond.
    tolerance = ("--tolerance", "15")
    result = invoke("check", alike, "--db", str(db), "--format", "json", *tolerance)
    assert result.exit_code == 0, result.output + result.stderr
    records = json.loads(result.stdout)
    assert len(records) == 3 and {r["verdict"] for r in records} == {"pass"}

    uneven = run_fleet(ray_cluster, tmp_path, db, slow=slow, confirm=True)
    result = invoke("check", uneven, "--db", str(db), "--format", "json", *tolerance)
    assert result.exit_code == 1, result.output + result.stderr
    by_node = {r["node_id"]: r for r in json.loads(result.stdout)}
    assert by_node[slow]["verdict"] == "high"  # time: twice the class's centre
    assert by_node[slow]["off_pct"] == pytest.approx(100, abs=25)
    assert by_node[slow]["confirmation"] == "re-measured"
    assert by_node[slow]["first_value"] == pytest.approx(by_node[slow]["value"], rel=0.25)
    # One earlier trial of its own is not a reference (2 are needed): no node verdict yet.
    assert by_node[slow]["node_verdict"] == "no baseline"
    assert all(r["verdict"] == "pass" for nid, r in by_node.items() if nid != slow)
    assert slow[:8] in result.stderr and "1 of 3 trial(s) out of bounds" in result.stderr

    again = run_fleet(ray_cluster, tmp_path, db, slow=slow)
    result = invoke("check", again, "--db", str(db), "--format", "json", *tolerance)
    assert result.exit_code == 1, result.output + result.stderr
    record = next(r for r in json.loads(result.stdout) if r["node_id"] == slow)
    assert record["confirmation"] == "persists"
    assert record["confirmed_by"]["campaign"] == uneven

    flag = tmp_path / "slow-once"
    transient = run_fleet(ray_cluster, tmp_path, db, slow=once, confirm=True, once=flag)
    assert flag.exists()  # the first reading was the slow one
    result = invoke("check", transient, "--db", str(db), "--format", "json", *tolerance)
    assert result.exit_code == 0, result.output + result.stderr
    record = next(r for r in json.loads(result.stdout) if r["node_id"] == once)
    assert record["verdict"] == "transient" and not record["failed"]
    assert record["first_value"] > 1.5 * record["value"]  # 2x at first, then as its peers
    table = invoke("check", transient, "--db", str(db), *tolerance)
    assert "transient" in table.stdout and "first " in table.stdout
    strict = invoke("check", transient, "--db", str(db), "--strict", *tolerance)
    assert strict.exit_code == 1, strict.output
    # The report's control chart marks the transient first reading apart.
    page = tmp_path / "transient.html"
    assert invoke("report", transient, "--db", str(db), "-o", str(page)).exit_code == 0
    assert "transient (did not repeat)" in page.read_text()


@pytest.mark.quiet
@pytest.mark.ray
def test_rounds_interleave_and_the_median_of_round_medians_is_the_figure(
    ray_cluster, tmp_path: Path
) -> None:
    """Two benchmarks in 3 rounds on one node, its first round of `a` slow (3x): the rounds
    of a and b alternate in time, the stored figure is the median of the round medians (not
    slow), the samples are every round's, the spreads within and between rounds are stored,
    and check takes back an out verdict whose rounds straddle the centre."""
    import sqlite3

    once = tmp_path / "once"
    node = ray_cluster.worker_ids[0]  # zone a
    pb = tmp_path / "rounds.yaml"
    pb.write_text(
        "campaign: {name: rounds}\n"
        "defaults: {warmup_iterations: 1, min_repetitions: 6, max_repetitions: 6,\n"
        "           min_duration_s: 0, rounds: 3, contended_cores: 4}\n"
        "targets: {za: {labels: {zone: a}}}\n"
        "benchmarks:\n"
        f"  - {{name: a, workload: test.flaky, on: za, params: {{sleep_s: 0.02, size: 10,\n"
        f'     slow_node: "{node}", slow_factor: 3.0, slow_once: "{once}"}}}}\n'
        "  - {name: b, workload: test.flaky, on: za, params: {sleep_s: 0.01, size: 20}}\n"
    )
    db = tmp_path / "r.sqlite"
    result = invoke("run", str(pb), "--db", str(db), "--address", ray_cluster.address)
    assert result.exit_code == 0, result.output + result.stderr
    assert once.exists()
    c = sqlite3.connect(db)
    rows = c.execute(
        "select t.benchmark, t.context, m.median, m.n, m.ci_low, m.ci_high from trials t "
        "join metrics m on m.trial_id = t.id where m.name = 'time'"
    ).fetchall()
    assert len(rows) == 2  # one stored trial per benchmark, not one per round
    by = {b: (json.loads(ctx), median, n, lo, hi) for b, ctx, median, n, lo, hi in rows}
    ctx, median, n, low, high = by["a"]
    assert ctx["rounds"] == 3 and n == 18  # every round's samples
    medians = ctx["round_medians"]["time"]
    assert len(medians) == 3 and max(medians) > 2.5 * min(medians)  # round 1 was slow
    assert median == pytest.approx(sorted(medians)[1])  # the median of the round medians
    assert (low, high) == (min(medians), max(medians))  # 3 rounds: the CI spans them
    spread = ctx["round_spread"]["time"]
    assert spread["between_cv"] > 0.4 > spread["within_cv"]
    assert by["b"][0]["rounds"] == 3 and by["b"][2] == 18
    assert median < 2 * sorted(medians)[0]  # the slow round did not make the figure
    # Interleaved: each trial's first round starts before the other's last round ends (one
    # trial at a time on the node: without rounds, one would end before the other began).
    spans = c.execute("select started_at, finished_at from trials").fetchall()
    assert max(s for s, _ in spans) < min(e for _, e in spans), spans


T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def plant_history(tmp_path: Path) -> str:
    """History: 20 nodes of one class x 6 daily campaigns, bandwidth ~100 GB/s with 2% noise
    between trials. The newest campaign (c5) has three planted outliers (-30%, -15%, +25%) on
    n03, n11 and n17."""
    url = sqlite_url(tmp_path / "r.sqlite")
    store = ResultStore(url)
    rng = random.Random(7)
    nodes = [store.upsert_node(NodeRecord(f"fp{i}", "hw", f"n{i:02d}", {})) for i in range(20)]
    planted = {3: 0.70, 11: 0.85, 17: 1.25}
    for day in range(6):
        cid = f"c{day}"
        store.start_campaign(CampaignRecord(cid, "fleet", "", "", "", "", {}, T0, "0"))
        for i, node in enumerate(nodes):
            centre = 100.0 * (planted.get(i, 1.0) if day == 5 else 1.0)
            centre *= rng.gauss(1.0, 0.02)
            values = [centre * rng.gauss(1.0, 0.01) for _ in range(10)]
            store.record_trial(
                TrialRecord(
                    campaign_id=cid,
                    trial_key=f"k{i}",
                    benchmark="stream",
                    workload="memory.stream",
                    params={"op": "triad"},
                    params_hash="ph",
                    status="ok",
                    attempt=1,
                    node_id=node,
                    ray_node_id=f"{i:02d}" * 28,
                    started_at=T0 + timedelta(days=day),
                    metrics=[MetricRecord("bandwidth", "GB/s", True, values, summarize(values))],
                    primary_metric="bandwidth",
                )
            )
    return url


def test_planted_outliers_are_found_with_no_false_alarm(tmp_path: Path) -> None:
    url = plant_history(tmp_path)
    result = invoke("check", "c5", "--db", url, "--format", "json")
    assert result.exit_code == 1
    records = json.loads(result.stdout)
    flagged = {r["node"] for r in records if r["failed"]}
    assert flagged == {"n03", "n11", "n17"}
    verdicts = {r["node"]: r["verdict"] for r in records}
    assert verdicts["n03"] == verdicts["n11"] == "low" and verdicts["n17"] == "high"
    assert records[0]["node"] == "n03"  # the furthest off first
    # Pinned: the first five campaigns only; the same three found.
    built = invoke(
        "baseline",
        "build",
        "before",
        "--db",
        url,
        *[arg for d in range(5) for arg in ("--campaign", f"c{d}")],
    )
    assert built.exit_code == 0 and "1 reference(s) from 100 trial(s)" in built.output
    pinned = invoke("check", "c5", "--db", url, "--baseline", "before", "--format", "json")
    assert {r["node"] for r in json.loads(pinned.stdout) if r["verdict"] != "pass"} == {
        "n03",
        "n11",
        "n17",
    }
    assert invoke("check", "c4", "--db", url).exit_code == 0  # a clean campaign: no alarm
    missing = invoke("check", "c5", "--db", url, "--baseline", "nope")
    assert missing.exit_code == 2 and "no baseline 'nope'" in missing.output


def test_noisy_or_contended_trials_are_unreliable_not_failures(tmp_path: Path) -> None:
    import sqlite3

    test_planted_outliers_are_found_with_no_false_alarm(tmp_path)
    db = sqlite3.connect(tmp_path / "r.sqlite")
    db.execute(
        "update trials set context = '{\"contended\": true}' where campaign_id = 'c5' and "
        "node_id = (select id from nodes where hostname = 'n17')"
    )
    db.commit()
    result = invoke("check", "c5", "--db", sqlite_url(tmp_path / "r.sqlite"), "--format", "json")
    assert result.exit_code == 1  # n03 and n11 still fail
    records = {r["node"]: r for r in json.loads(result.stdout)}
    assert records["n17"]["verdict"] == "unreliable" and records["n17"]["failed"] is False
    assert records["n17"]["flags"] == ["contended"]
    assert {n for n, r in records.items() if r["failed"]} == {"n03", "n11"}


def test_an_out_figure_whose_rounds_straddle_the_centre_is_not_out(tmp_path: Path) -> None:
    """n11's figure (-15%) measured in 3 rounds whose medians span 80-102 GB/s: the rounds do
    not agree it is out, so it passes; in one round, or rounds all below, it stays low."""
    import sqlite3

    url = plant_history(tmp_path)
    db = sqlite3.connect(tmp_path / "r.sqlite")

    def rounds_of_n11(low: float, high: float) -> dict:
        db.execute(
            "update trials set context = '{\"rounds\": 3}' where campaign_id = 'c5' and "
            "node_id = (select id from nodes where hostname = 'n11')"
        )
        db.execute(
            "update metrics set ci_low = ?, ci_high = ? where trial_id = (select t.id from "
            "trials t join nodes n on n.id = t.node_id where t.campaign_id = 'c5' and "
            "n.hostname = 'n11')",
            (low, high),
        )
        db.commit()
        result = invoke("check", "c5", "--db", url, "--format", "json")
        return {r["node"]: r for r in json.loads(result.stdout)}

    straddling = rounds_of_n11(80.0, 102.0)
    assert straddling["n11"]["verdict"] == "pass" and not straddling["n11"]["failed"]
    assert straddling["n11"]["rounds_ci"] == [80.0, 102.0]
    assert straddling["n03"]["verdict"] == "low" and straddling["n17"]["verdict"] == "high"
    table = invoke("check", "c5", "--db", url, "--wide")
    assert "80..102" in table.stdout  # the between-round spread, shown
    # The report's control chart draws it as a bar over the round medians' CI.
    page = tmp_path / "c5.html"
    assert invoke("report", "c5", "--db", url, "-o", str(page)).exit_code == 0
    assert "between rounds (CI of the round medians)" in page.read_text()
    below = rounds_of_n11(80.0, 90.0)
    assert below["n11"]["verdict"] == "low" and below["n11"]["failed"]


def test_expectations_are_judged_by_check(tmp_path: Path) -> None:
    test_planted_outliers_are_found_with_no_false_alarm(tmp_path)
    url = sqlite_url(tmp_path / "r.sqlite")
    import sqlite3

    effective = {
        "benchmarks": [
            {
                "name": "stream",
                "workload": "memory.stream",
                "expect": {"bandwidth": {"min": 90, "of_peak": 0.5}},
            }
        ]
    }
    db = sqlite3.connect(tmp_path / "r.sqlite")
    db.execute("update campaigns set effective = ? where id = 'c4'", (json.dumps(effective),))
    db.commit()
    result = invoke("check", "c4", "--db", url)
    assert result.exit_code == 0, result.output  # every node over 90 GB/s; no peak known
    assert "expectations (playbook expect:)" in result.output
    assert "no datasheet peak" in result.output
    effective["benchmarks"][0]["expect"] = {"bandwidth": {"min": 101}}
    db.execute("update campaigns set effective = ? where id = 'c4'", (json.dumps(effective),))
    db.commit()
    result = invoke("check", "c4", "--db", url, "--format", "json")
    assert result.exit_code == 1
    records = json.loads(result.stdout)
    missed = [r for r in records if any(e["verdict"] == "fail" for e in r["expect"])]
    assert missed and all(r["failed"] for r in missed)
    assert all(r["value"] < 101 for r in missed)
    assert all(r["value"] >= 101 for r in records if r not in missed)


@pytest.mark.ray
def test_run_checks_the_playbooks_expectations(ray_cluster, tmp_path: Path) -> None:
    path = tmp_path / "expect.yaml"
    path.write_text(
        PLAYBOOK.format(slow="", once="").replace(
            'slow_once: ""}\n', 'slow_once: ""}\n    expect: {time: {max: 0.001}}\n'
        )
    )
    db = tmp_path / "r.sqlite"
    result = invoke("run", str(path), "--db", str(db), "--address", ray_cluster.address)
    assert result.exit_code == 1, result.output + result.stderr  # 20 ms is not <= 0.001 ms
    assert "3 expectation(s) missed" in result.output
    assert "<= 0.001 ms" in result.output


def test_report_draws_the_fleet_heatmap_and_control_charts(tmp_path: Path) -> None:
    """The report's fleet heatmap has a cell per node, the three planted outliers marked,
    coloured by their signed distance; the control chart draws the centre and the limits."""
    url = plant_history(tmp_path)
    out = tmp_path / "c5.html"
    result = invoke("report", "c5", "--db", url, "-o", str(out))
    assert result.exit_code == 0, result.output + result.stderr
    page = out.read_text()
    health = page[page.index("<h2>Fleet health</h2>") : page.index("<h2>Matrices</h2>")]
    assert "3 out of bounds" in health
    cells = re.findall(r'<g id="cell-(\d+)-0">\s*<text[^>]*>([^<]*)</text>', health)
    assert len(cells) == 20  # one row per node, one benchmark column
    marked = sorted(int(i) for i, note in cells if note.endswith("!"))
    assert marked == [3, 11, 17]  # rows sorted by node name: n00 .. n19
    assert dict(cells)["3"].startswith("-3") and dict(cells)["17"].startswith("+2")
    assert "control limits" in health and "centre" in health
    assert "this campaign" in health and "history" in health
