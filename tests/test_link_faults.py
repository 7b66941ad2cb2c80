"""Link faults on separate hosts (tests/netbed.py), mid-campaign: one host's link cut past
Ray's health check and then restored, one cut for good, one dropping 5% of its packets
throughout. Nothing stored is lost, the cut hosts' trials fail naming them within a stated
bound, `--resume` completes the campaign once the restored host's Ray node is back, and
the lossy link's trials are flagged."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.netbed import NetBed, netbed, unavailable, wait_for_nodes

pytestmark = pytest.mark.ray
HARNESS = str(Path(sys.executable).with_name("harness"))
# The head declares a node dead after 4 failed checks half a second apart (each waiting
# 1.5 s at most): 2-8 s. A lab's Ray uses its defaults (checks every 3 s, 5 failures, 10 s
# each).
HEALTH = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "1500",
    "RAY_health_check_failure_threshold": "4",
}
DEAD_WITHIN_S = 4 * (0.5 + 1.5) + 5 + 2 + 8  # the checks, the dispatcher's grace and poll, slack
CUT_S = 12  # longer than the checks take

# The first two benchmarks only need to be running on each host when its link goes: the
# test plugin's sleeping workload holds a trial open without the CPU a real kernel burns on
# four hosts at once (the links' p2p trials are real). The second lasts longer than the
# hosts' first trials end apart on a busy machine, so every host is running it at the cut;
# the cut is both ways, so a cut host's trial that ends meanwhile cannot report back.
PLAYBOOK = """
campaign: {name: faults}
defaults: {warmup_iterations: 1, min_repetitions: 3, min_duration_s: 2, max_duration_s: 20,
           timeout_s: 120, contended_cores: 8}
benchmarks:
  - {name: first, workload: test.flaky, each: true, params: {sleep_s: 0.05},
     settings: {min_duration_s: 1}}
  - {name: second, workload: test.flaky, each: true, params: {sleep_s: 0.05},
     settings: {min_duration_s: 10, max_duration_s: 12}}
  - {name: links, workload: network.p2p, each: true, ranks: 2,
     settings: {min_duration_s: 1}, params: {size_bytes: 1048576}}
"""


@pytest.fixture(scope="module")
def bed() -> Iterator[NetBed]:
    why = unavailable()
    if why:
        pytest.skip(why)
    with netbed(4, env={0: HEALTH}) as made:
        yield made


def stored(db: Path) -> list[tuple]:
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=30) as c:
        try:
            return c.execute(
                "select id, benchmark, status, failure_reason, ranks, context, started_at, "
                "finished_at from trials"
            ).fetchall()
        except sqlite3.OperationalError:  # the schema is still being made
            return []


def hosts_of(ranks: str | None) -> frozenset[str]:
    return frozenset(r["hostname"] for r in json.loads(ranks or "null") or [])


def lost_host(reason: str | None) -> str | None:
    """The host a "node lost: HOST (id) left the cluster" reason names."""
    if not reason or "node lost: " not in reason:
        return None
    return reason.split("node lost: ", 1)[1].split(" (", 1)[0]


def test_cut_restored_cut_for_good_and_lossy_links(bed: NetBed, tmp_path: Path) -> None:
    h1, lossy, restored, gone = bed.hosts
    pb = tmp_path / "faults.yaml"
    pb.write_text(PLAYBOOK)
    db = tmp_path / "faults.sqlite"
    env = {"RAY_AUTH_MODE": "disabled", "HARNESS_STATE_DIR": str(tmp_path / "state")}
    args = (HARNESS, "run", str(pb), "--db", str(db), "--address", bed.address, "--no-progress")
    bed.drop(lossy, 5)  # throughout, the resume included
    run = bed.start(h1, *args, env=env, log=tmp_path / "run.log")

    def until_stored(done, timeout: float) -> None:
        """Wait, while the run goes on, until the stored trials satisfy ``done``."""
        deadline = time.monotonic() + timeout
        while not done(stored(db)):
            assert run.poll() is None and time.monotonic() < deadline, (
                tmp_path / "run.log"
            ).read_text()
            time.sleep(0.3)

    # Cut both links once the first benchmark's trials are stored (the second's running).
    until_stored(lambda rows: len([r for r in rows if r[1] == "first"]) >= 4, 120)
    cut_at = time.time()
    bed.drop(restored, 100)
    bed.drop(gone, 100)
    time.sleep(CUT_S)
    # Back once its running trial is stored failed: a result that reached the driver within
    # the dispatcher's grace would be stored as it ran (the README says so).
    until_stored(
        lambda rows: any(r[1] == "second" and lost_host(r[3]) == restored.hostname for r in rows),
        60,
    )
    bed.drop(restored, None)  # Ray declared its node dead meanwhile
    code = run.wait(timeout=240)
    output = (tmp_path / "run.log").read_text()
    print(output)
    assert code == 1, output
    rows = stored(db)
    assert len(rows) == 4 + 4 + 6, rows  # every trial stored, run or failed
    by: dict[str, list[tuple]] = {}
    for _id, bench, status, reason, ranks, context, _started, finished in rows:
        finished = datetime.fromisoformat(finished).replace(tzinfo=timezone.utc).timestamp()
        by.setdefault(bench, []).append((status, reason, hosts_of(ranks), context, finished))
    assert all(r[0] == "ok" for r in by["first"]), by["first"]
    # Each failed trial names the host it lost, within the stated bound of the cut.
    for bench, trials in by.items():
        for status, reason, _hosts, _ctx, finished in trials:
            if status != "ok":
                assert lost_host(reason) in (restored.hostname, gone.hostname), (bench, reason)
                assert finished - cut_at < DEAD_WITHIN_S, (reason, finished - cut_at)
    print("failed after the cut (s):", sorted(round(r[4] - cut_at, 1) for t in by.values()
                                              for r in t if r[0] != "ok"))  # fmt: skip
    lost = sorted(lost_host(r[1]) or "ok" for r in by["second"])
    assert lost == sorted(["ok", "ok", restored.hostname, gone.hostname]), by["second"]
    links = {r[2]: r for r in by["links"]}
    lossy_pair = links[frozenset({h1.hostname, lossy.hostname})]
    assert lossy_pair[0] == "ok", lossy_pair
    context = json.loads(lossy_pair[3])
    assert context.get("retransmits") is True, context
    assert "RETRANSMITS" in output, output
    print("lossy pair resent", context["tcp_retransmit_share_by_host"])

    # The restored host's Ray node is started again (Ray does not take a dropped raylet
    # back); --resume runs what failed on it; the host cut for good stays failed, named.
    bed.restart_ray(restored)
    wait_for_nodes(bed, 3, 60)
    (campaign,) = sqlite3.connect(db).execute("select id from campaigns").fetchone()
    resumed = bed.run(h1, *args, "--resume", campaign, env=env, timeout=240)
    output = resumed.stdout + resumed.stderr
    print(output)
    assert resumed.returncode == 1, output
    assert f"{gone.hostname} (" in output, output
    latest = {}
    for _id, bench, status, reason, ranks, context, _s, _f in sorted(stored(db)):
        latest[(bench, hosts_of(ranks) or _id)] = (status, reason, context)
    ok_pairs = {
        hosts: json.loads(ctx)
        for (bench, hosts), (status, _r, ctx) in latest.items()
        if bench == "links" and status == "ok"
    }
    assert frozenset({h1.hostname, restored.hostname}) in ok_pairs, latest
    assert not ok_pairs[frozenset({h1.hostname, restored.hostname})].get("retransmits")
    assert ok_pairs[frozenset({lossy.hostname, restored.hostname})].get("retransmits")
    assert not any(gone.hostname in hosts for hosts in ok_pairs), ok_pairs
