"""Multi-rank collectives across the real three-node Ray cluster, checked in SQL."""

from __future__ import annotations

import json
import sqlite3
import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli.app import app

pytestmark = pytest.mark.ray
runner = CliRunner()

PLAYBOOK = """
campaign: {name: collectives}
defaults:
  warmup_iterations: 2
  min_repetitions: 5
  max_repetitions: 200
  min_duration_s: 0.2
  timeout_s: 120
  telemetry: {sources: [host]}
targets:
  workers: {labels: {tier: worker}}
benchmarks:
  - name: ar2
    workload: collective.all_reduce
    on: workers
    ranks: 2
    params: {size_bytes: [65536, 1048576]}
  - name: ar3
    workload: collective.all_reduce
    ranks: {nodes: 3, per_node: 1}
    params: {size_bytes: 1048576}
  - name: ag3
    workload: collective.all_gather
    ranks: 3
    params: {size_bytes: 1048576, dtype: bf16}
  - name: bad
    workload: collective.all_gather
    ranks: 3
    params: {size_bytes: 65536, corrupt_rank: 1}
  - name: links
    workload: network.p2p
    each: true
    ranks: 2
    params: {size_bytes: 65536}
"""


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output + result.stderr, result.output + result.stderr
    return result


def test_collectives_across_nodes(ray_cluster, tmp_path: Path) -> None:
    pb, db_path = tmp_path / "c.yaml", tmp_path / "c.sqlite"
    pb.write_text(PLAYBOOK)
    result = invoke("run", str(pb), "--db", str(db_path), "--address", ray_cluster.address)
    assert result.exit_code == 1, result.output + result.stderr  # `bad` fails, by design
    db = sqlite3.connect(db_path)
    rows = [
        (tid, b, json.loads(p)["size_bytes"], status, reason, json.loads(ranks or "null"), ctx)
        for tid, b, p, status, reason, ranks, ctx in db.execute(
            "select id, benchmark, params, status, failure_reason, ranks, context from trials"
        )
    ]
    by_bench: dict[str, list] = {}
    for tid, bench, _size, *rest in rows:
        by_bench.setdefault(bench, []).append((tid, *rest))

    # Placement: ar2 on the two workers, one rank each; ar3/ag3 over all three nodes.
    for _, status, _, ranks, _ in by_bench["ar2"]:
        assert status == "ok"
        assert sorted(r["ray_node_id"] for r in ranks) == sorted(ray_cluster.worker_ids)
    everyone = sorted([ray_cluster.head_id, *ray_cluster.worker_ids])
    for bench in ("ar3", "ag3"):
        (tid, status, _, ranks, _) = by_bench[bench][0]
        assert status == "ok" and sorted(r["ray_node_id"] for r in ranks) == everyone

    # busbw from the stored time, with nccl-tests' sizes and factors.
    cases = [
        ("ar2", 1048576, 2, 1048576, 2 * 1 / 2),
        ("ar3", 1048576, 3, 1048576, 2 * 2 / 3),
        ("ag3", 1048576, 3, (1048576 // 3) // 16 * 16 // 2 * 2 * 3, 2 / 3),
    ]
    for bench, size, n, s_bytes, factor in cases:
        tid, ctx = next((r[0], json.loads(r[6])) for r in rows if r[1] == bench and r[2] == size)
        assert ctx["world_size"] == n and ctx["bytes_S"] == s_bytes
        assert ctx["busbw_factor"] == pytest.approx(factor) and ctx["wrong"] == 0
        assert ctx["cross_rank_reduction"] == "mean"
        times = [
            v
            for (v,) in db.execute(
                "select s.value from samples s join metrics m on m.id=s.metric_id "
                "where m.trial_id=? and m.name='time' order by s.idx",
                (tid,),
            )
        ]
        busbw = [
            v
            for (v,) in db.execute(
                "select s.value from samples s join metrics m on m.id=s.metric_id "
                "where m.trial_id=? and m.name='busbw' order by s.idx",
                (tid,),
            )
        ]
        assert len(times) == len(busbw) >= 5
        for t, b in zip(times, busbw, strict=True):
            assert b == pytest.approx(s_bytes / (t / 1e3) / 1e9 * factor)
        # Every rank's own times are kept, and the stored time is their mean per iteration.
        per_rank = [
            [
                v
                for (v,) in db.execute(
                    "select s.value from samples s join metrics m on m.id=s.metric_id "
                    "where m.trial_id=? and m.name=? order by s.idx",
                    (tid, f"rank_time.{r}"),
                )
            ]
            for r in range(n)
        ]
        assert all(len(row) == len(times) for row in per_rank)
        assert times == pytest.approx(
            [statistics.fmean(col) for col in zip(*per_rank, strict=True)]
        )

    # A rank that corrupts its data fails the trial with nccl-tests' #wrong count.
    (_, status, reason, _, _) = by_bench["bad"][0]
    assert status == "failed" and "#wrong = 3 elements across 3 ranks" in reason

    # network.p2p with each: every pair of the three nodes, latency and bandwidth stored.
    pairs = by_bench["links"]
    assert len(pairs) == 3
    assert {frozenset(r["ray_node_id"] for r in ranks) for *_, ranks, _ in pairs} == {
        frozenset(p)
        for p in (
            (everyone[0], everyone[1]),
            (everyone[0], everyone[2]),
            (everyone[1], everyone[2]),
        )
    }
    for tid, status, *_ in pairs:
        assert status == "ok"
        # Each iteration's bandwidth is the size over its half round trip. (The medians need
        # not agree: with an even count the median averages the two middle samples, and a
        # loaded run's differ enough to move the bandwidth's median 5% off.)
        raw: dict[str, list[float]] = {}
        for name, value in db.execute(
            "select m.name, s.value from samples s join metrics m on m.id = s.metric_id "
            "where m.trial_id = ? order by s.idx",
            (tid,),
        ):
            raw.setdefault(name, []).append(value)
        assert raw["latency"] and all(ms > 0 for ms in raw["latency"])
        assert raw["bandwidth"] == pytest.approx(
            [65536 / (ms / 1e3) / 1e9 for ms in raw["latency"]], rel=1e-9
        )


def test_layouts_are_validated_before_anything_runs(ray_cluster, tmp_path: Path) -> None:
    pb = tmp_path / "v.yaml"
    pb.write_text(
        "campaign: {name: v}\nbenchmarks:\n"
        "  - {workload: collective.all_reduce}\n"
        "  - {workload: kernel.gemm, ranks: 2}\n"
        "  - {workload: network.p2p, ranks: 3}\n"
    )
    result = invoke("playbook", "validate", str(pb))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert any("benchmarks[0].ranks: collective.all_reduce runs over ranks" in x for x in lines)
    assert any("benchmarks[1].ranks: kernel.gemm runs as one process" in x for x in lines)
    assert any("benchmarks[2].ranks: network.p2p needs exactly 2 ranks, got 3" in x for x in lines)
    pb.write_text(
        "campaign: {name: v}\nbenchmarks:\n  - {workload: collective.all_reduce, ranks: 4}\n"
    )
    result = invoke(
        "run", str(pb), "--db", str(tmp_path / "v.sqlite"), "--address", ray_cluster.address
    )
    assert result.exit_code == 2
    assert (
        "error: target 'any' (benchmark collective.all_reduce[0]) matches 3 node(s), needs 4"
        in result.stderr
    )


def test_combine_reports_the_failed_rank_even_when_it_reports_first() -> None:
    from harness.campaign.dispatch import combine
    from harness.node.outcome import TrialOutcome

    class Node:
        hostname = "h2"

    class Trial:
        ranks = (Node(), Node(), Node())

    failed = TrialOutcome(status="failed", failure_phase="setup", failure_reason="boom")
    out = combine(Trial(), {2: failed})  # rank 2 failed before ranks 0 and 1 reported
    assert out.status == "failed" and out.failure_reason == "rank 2 on h2: boom"
    ok = {r: TrialOutcome(status="ok", stop_reason=f"r{r}") for r in range(3)}
    assert combine(Trial(), ok).stop_reason == "r0"


def test_a_rank_that_cannot_reach_rank_0_says_so_in_bounded_time() -> None:
    import socket
    import time

    from workloads.base import RankContext
    from workloads.errors import UnsupportedParams
    from workloads.rendezvous import wait_for_rank0

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = RankContext(1, 2, 0, "127.0.0.1", port, ("h1", "h2"), node_ip="10.0.0.2")
    t0 = time.monotonic()
    with pytest.raises(UnsupportedParams) as exc:
        wait_for_rank0(ctx, timeout_s=1.0)
    assert time.monotonic() - t0 < 5
    assert str(exc.value) == (
        f"rank 1 on h2 (10.0.0.2) cannot reach rank 0 on h1 at 127.0.0.1:{port} within 1 s "
        "(Connection refused)"
    )
