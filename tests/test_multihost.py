"""Separate hosts for real (tests/netbed.py: network namespaces on a bridge, each with its own
address, a hostname that resolves to a loopback address as on Debian, and a Ray node): every
multi-rank trial joins across them through the interface of its Ray node's IP, and a link
shaped with tbf reads the planted rate."""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netbed import BURST_BYTES, NetBed, faketime_env, netbed, unavailable, wait_for_port

pytestmark = pytest.mark.ray
HARNESS = str(Path(sys.executable).with_name("harness"))
RATE_MBIT = 200
CLOCK_AHEAD_S = 30
# A TCP segment of 1448 payload bytes (MSS at MTU 1500 with timestamps) travels in a frame
# of 1514 bytes (Ethernet 14, IP 20, TCP 32): tbf counts frames, the workload payload.
PAYLOAD_SHARE = 1448 / 1514
PLANTED_GBPS = RATE_MBIT * 1e6 / 8 * PAYLOAD_SHARE / 1e9
SMALL = 32768  # bytes: a message that takes 1.2 ms at the planted rate


def reads_planted(gbps: float) -> bool:
    """A shaped link's best repetition against the planted rate: 3% over at most (tbf's
    bucket is 0.1% of a 4 MiB message); 20% under at most. The medians of some fresh beds'
    campaigns read 0.78-0.86 of the rate on the 2-core VM with no other test running
    (benchmarks/README.md), most 0.90-1.00. A wrong count of bytes or bits reads far off."""
    return 0.80 * PLANTED_GBPS <= gbps <= 1.03 * PLANTED_GBPS


def wire_bytes(payload: int) -> int:
    """Bytes on the wire for ``payload`` bytes of TCP: 66 bytes of headers per segment."""
    return payload + -(-payload // 1448) * (1514 - 1448)


PLAYBOOK = """
campaign: {name: hosts}
defaults: {warmup_iterations: 1, min_repetitions: 2, min_duration_s: 0, max_duration_s: 30,
           timeout_s: 180, telemetry: {sources: [host], interval_s: 0.5}}
benchmarks:
  - {name: links, workload: network.p2p, each: true, ranks: 2, params: {size_bytes: 4194304},
     settings: {min_repetitions: 5}}
  - {name: ring, workload: collective.all_reduce, ranks: 3, params: {size_bytes: 16777216}}
  - {name: small, workload: network.p2p, each: true, ranks: 2, params: {size_bytes: 32768},
     settings: {min_repetitions: 100, min_duration_s: 0.3}}
"""


@pytest.fixture(scope="module")
def bed() -> Iterator[NetBed]:
    why = unavailable()
    if why:
        pytest.skip(why)
    # h3's clock runs 30 s ahead (libfaketime): every test here runs with one host off.
    with netbed(3, env={2: faketime_env(CLOCK_AHEAD_S)}) as made:
        yield made


def harness_run(bed: NetBed, pb: Path, db: Path, **env: str) -> tuple[int, str]:
    result = bed.run(
        bed.hosts[0],
        *(HARNESS, "run", str(pb), "--db", str(db), "--address", bed.address, "--no-progress"),
        env={"RAY_AUTH_MODE": "disabled", **env},
    )
    return result.returncode, result.stdout + result.stderr


def test_a_node_whose_clock_is_off_is_measured_corrected_and_refusable(
    bed: NetBed, tmp_path: Path
) -> None:
    """Host h3's Ray node runs 30 s ahead: the campaign measures each offset at start and
    end, stores it, moves h3's trial times onto the driver's clock, and --max-clock-skew
    refuses it. The campaign is run with GLOO_SOCKET_IFNAME set at the driver: the user's
    interface wins on every rank, and the trial says so. A serving load from a client on
    each host is one trial whose span leaves h3's clock out."""
    import time

    h1 = bed.hosts[0]
    bed.start(h1, HARNESS, "serve-model", "--engine", "synthetic", "--host", h1.address,
              "--port", "18081", "--first-token-ms", "20", "--token-ms", "10",
              log=bed.folder / "serve-clock.log")  # fmt: skip
    wait_for_port(h1, 18081, 60)
    pb = tmp_path / "clock.yaml"
    pb.write_text(
        "campaign: {name: clock}\n"
        "defaults: {warmup_iterations: 0, min_repetitions: 3, min_duration_s: 0.3,\n"
        "           telemetry: {sources: [host], interval_s: 0.05}}\n"
        "benchmarks:\n"
        "  - {workload: memory.stream, each: true, params: {op: copy, size_mib: 4}}\n"
        "  - {workload: network.p2p, each: true, ranks: 2, params: {size_bytes: 65536}}\n"
        "  - {name: load, workload: inference.serving, ranks: 3, settings: {min_repetitions: 1},\n"
        f"     params: {{url: 'http://{h1.address}:18081', concurrency: 3, min_requests: 9,\n"
        "              output_len: 4}}\n"
    )
    db = tmp_path / "clock.sqlite"
    before = time.time()
    code, output = harness_run(bed, pb, db, GLOO_SOCKET_IFNAME="eth0")
    after = time.time()
    assert code == 0, output
    assert "node h3 (" in output and "s from the driver's" in output
    refused = bed.run(
        bed.hosts[0],
        *(HARNESS, "run", str(pb), "--db", str(db), "--address", bed.address),
        *("--max-clock-skew", "5", "--dry-run"),
        env={"RAY_AUTH_MODE": "disabled"},
    )
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.count("error: ") == 2 and "over --max-clock-skew 5 s" in refused.stderr
    c = sqlite3.connect(db)
    clocks = {
        json.loads(labels)["host"]: json.loads(clock)
        for labels, clock in c.execute("select labels, clock from campaign_nodes")
    }
    for when in ("start", "end"):
        assert clocks["h3"][when]["offset_s"] == pytest.approx(CLOCK_AHEAD_S, abs=0.5)
        assert abs(clocks["h1"][when]["offset_s"]) < 0.5
    (p2p,) = c.execute("select context from trials where workload = 'network.p2p'").fetchone()
    chosen = json.loads(p2p)["socket_ifname"]
    assert chosen["GLOO_SOCKET_IFNAME"] == {"value": "eth0", "set_by": "user"}
    assert chosen["NCCL_SOCKET_IFNAME"]["set_by"] == "harness"
    rows = c.execute(
        "select t.context, t.window_start, t.window_end, min(s.t), max(s.t) from trials t "
        "join telemetry_samples s on s.trial_id = t.id where t.workload = 'memory.stream' "
        "group by t.id"
    ).fetchall()
    assert len(rows) == 3
    for _, start, end, first, last in rows:
        # On the driver's clock: within the run, and the samples within their window.
        assert before <= start <= end <= after, (start, before, after)
        assert start - 0.1 <= first <= last <= end + 0.1
    # Every link alike: `harness check` names no slow host, and every pair passes. This runs
    # beside the other test process, whose load moved two of the three pairs' 64 KiB latency
    # past the pairs' 20% floor once: 50% here (the planted link below reads 8x the
    # unshaped latency at 32 KiB).
    (campaign,) = c.execute("select id from campaigns").fetchone()
    checked = bed.run(bed.hosts[0], HARNESS, "check", campaign, "--db", str(db),
                      "--format", "json", "--tolerance", "50")  # fmt: skip
    assert "slow host" not in checked.stderr, checked.stderr
    verdicts = [r["verdict"] for r in json.loads(checked.stdout) if r["workload"] == "network.p2p"]
    assert verdicts == ["pass"] * 3, checked.stdout
    offsets = sorted(json.loads(ctx)["clock_offset_s"] for ctx, *_ in rows)
    assert offsets[2] == pytest.approx(CLOCK_AHEAD_S, abs=0.5) and abs(offsets[0]) < 0.5
    # The ranks' spans are timed from the barrier they passed together: on their wall
    # clocks, h3's client would have started 30 s after the others and the span held it.
    (load,) = c.execute("select context from trials where benchmark = 'load'").fetchone()
    load = json.loads(load)
    assert load["client_ranks"] == 3 and load["completed"] >= 9, load
    assert all(0 <= s < 1000 for s in load["rank_start_spread_ms"]), load["rank_start_spread_ms"]
    (thr,) = c.execute(
        "select m.median from metrics m join trials t on t.id = m.trial_id "
        "where t.benchmark = 'load' and m.name = 'output_throughput'"
    ).fetchone()
    assert thr > 30, thr  # 3 streams of 4 tokens in ~60 ms: ~200 tokens/s; ~1 over 30 s
    print(f"clocks: {clocks}")


@pytest.mark.quiet
def test_multi_rank_trials_join_across_hosts_and_read_the_planted_rate(bed: NetBed) -> None:
    slow = bed.hosts[2]
    bed.shape(slow, RATE_MBIT)
    try:
        pb = bed.folder / "hosts.yaml"
        pb.write_text(PLAYBOOK)
        db = bed.folder / "r.sqlite"
        code, output = harness_run(bed, pb, db)
    finally:
        bed.unshape(slow)
    assert code == 0, output
    c = sqlite3.connect(db)
    # Each figure is the trial's best repetition (the most bandwidth, the least latency): the
    # bed has slow periods that only ever slow a repetition down, also with nothing else
    # running. In one, the unshaped pair's small messages read 2.37 ms (0.07-0.19 otherwise)
    # and a shaped pair's 6.2 ms; in others the shaped rate read 0.77-0.85 (README.md of
    # benchmarks/). The planted rate caps the fastest repetition as it does every other.
    rows = c.execute(
        "select t.benchmark, t.ranks, t.context, m.max from trials t join metrics m "
        "on m.trial_id = t.id where m.name in ('bandwidth', 'busbw') and t.status = 'ok'"
    ).fetchall()
    links = {}
    for benchmark, ranks, context, best in rows:
        hosts = frozenset(r["hostname"] for r in json.loads(ranks))
        context = json.loads(context)
        chosen = context["socket_ifname"]["GLOO_SOCKET_IFNAME"]
        assert (chosen["value"], chosen["set_by"]) == ("eth0", "harness"), chosen
        if benchmark == "links":
            links[hosts] = best
        else:
            ring = best
    assert len(links) == 3, links
    # Small messages: half a round trip is the unshaped floor (the same size between the
    # two unshaped hosts, on this bed) plus the time the planted rate takes for the message:
    # at best less the bucket tbf lets through at once, at worst all of it (the bucket not
    # yet refilled when the next message comes), with 5% for a busy machine either way. The
    # floor is left out of the lower bound: it was measured at another time than the shaped
    # pairs. An unshaped link (0.08-0.19 ms) still fails; the rate itself is judged by the
    # large messages below (reads_planted).
    small = dict(
        c.execute(
            "select t.ranks, m.min from trials t join metrics m on m.trial_id = t.id "
            "where t.benchmark = 'small' and m.name = 'latency'"
        ).fetchall()
    )
    small = {frozenset(r["hostname"] for r in json.loads(k)): v for k, v in small.items()}
    floor_ms = small[frozenset({"h1", "h2"})]
    serial_ms = (wire_bytes(SMALL) - BURST_BYTES) / (RATE_MBIT * 1e6 / 8) * 1e3
    burst_ms = BURST_BYTES / (RATE_MBIT * 1e6 / 8) * 1e3
    for pair, ms in small.items():
        if slow.hostname in pair:
            low, high = 0.95 * serial_ms, 1.05 * (floor_ms + serial_ms + burst_ms)
            assert low <= ms <= high, (pair, ms, floor_ms, low, high)
    print(f"small: floor {floor_ms:.4f} ms + serialization {serial_ms:.4f} ms; read {small}")
    # `harness results matrix` shows the slow host's row and column as the odd ones.
    (campaign,) = c.execute("select id from campaigns").fetchone()
    shown = bed.run(bed.hosts[0], HARNESS, "results", "matrix", campaign, "--db", str(db),
                    "--benchmark", "links", "--metric", "bandwidth", "--format", "json")  # fmt: skip
    (matrix,) = json.loads(shown.stdout)
    cells = [
        (row, col, v)
        for row, values in zip(matrix["rows"], matrix["values"], strict=True)
        for col, v in zip(matrix["columns"], values, strict=True)
        if v is not None
    ]
    assert len(cells) == 3, matrix
    for row, col, v in cells:
        if slow.hostname in (row, col):  # the trial's median: a slow period pulls it down
            assert 0.5 * PLANTED_GBPS <= v <= 1.03 * PLANTED_GBPS, (row, col, v, PLANTED_GBPS)
        else:
            assert v > 5 * PLANTED_GBPS, (row, col, v)
    # `harness check` names the slow host and fails; the healthy pair passes.
    checked = bed.run(bed.hosts[0], HARNESS, "check", campaign, "--db", str(db))
    print(checked.stdout, checked.stderr)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert f"slow host: {slow.hostname} (" in checked.stderr, checked.stderr
    fast = links[frozenset({"h1", "h2"})]
    for pair, gbps in links.items():
        if slow.hostname in pair:
            assert reads_planted(gbps), (pair, gbps, PLANTED_GBPS)
    assert fast > 5 * PLANTED_GBPS, links
    samples = c.execute(
        "select s.value from samples s join metrics m on m.id = s.metric_id join trials t "
        "on t.id = m.trial_id where t.benchmark = 'ring' and m.name = 'busbw' order by s.idx"
    ).fetchall()
    print("ring samples", [round(v, 5) for (v,) in samples])
    # A ring all-reduce moves 2(n-1)/n x S through each host's link each way: busbw is
    # what the slowest link carries.
    assert reads_planted(ring), (ring, PLANTED_GBPS)
    print(f"planted {PLANTED_GBPS:.5f} GB/s; p2p {links}; all_reduce busbw {ring:.5f} GB/s")


def test_a_host_that_cannot_reach_another_s_free_ports_is_refused_first(
    bed: NetBed, tmp_path: Path
) -> None:
    """A firewall on h1 that lets Ray's ports through but refuses h3's connections to the
    ports above them: the run stops before anything is stored, one line naming both."""
    h1, _, h3 = bed.hosts
    pb = tmp_path / "reach.yaml"
    pb.write_text(
        "campaign: {name: reach}\n"
        "benchmarks:\n"
        "  - {workload: network.p2p, each: true, ranks: 2, params: {size_bytes: 1024}}\n"
    )
    db = tmp_path / "reach.sqlite"
    bed.firewall(h1, h3)
    try:
        code, output = harness_run(bed, pb, db)
    finally:
        bed.firewall(h1, None)
    assert code == 2, output
    (line,) = [ln for ln in output.splitlines() if "cannot reach" in ln]
    assert line.startswith(f"error: node {h3.hostname} (") and f"reach {h1.hostname} (" in line
    assert f"{h1.address}:" in line and "no answer in 3 s" in line, line
    assert "Traceback" not in output
    assert not db.exists() or not sqlite3.connect(db).execute("select * from trials").fetchall()
