"""False alarms of `harness check` on unchanged nodes, beside its detection of a slow node.

Real campaigns on this machine, not generated data: a local Ray cluster (one node by
default: nodes on one machine run their trials at once and read each other's load), one
mixed playbook (GEMM fp32 and bf16, STREAM copy and triad, layernorm, all on the CPU, every
node) run N times back to back with `harness run --confirm` into one SQLite file, and
`harness check` on each campaign once WARMUP campaigns of history exist (``--rounds R``:
every trial measured in R interleaved rounds). Then K campaigns with the (last) node
planted slow: its raylet and workers moved into a cgroup held to a share of a CPU, as a
Slurm or Kubernetes CPU limit holds a node (root and a cgroup cpu controller).

For each check: its exit code, and its verdicts per key; and what the same check said of
the figures first measured (a figure out, then measured again in range, is ``transient``:
what an alarm without confirmation would have been). Goal: at most 1 false alarm in 20
checks on unchanged nodes, the planted node named in every check of the planted campaigns.

    PYTHONPATH=. .venv/bin/python benchmarks/fleet_false_alarms.py [--campaigns 24] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

HARNESS = str(Path(sys.executable).with_name("harness"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' cgroup and bed
PLAYBOOK = """
campaign: {name: unchanged, description: a mixed CPU playbook on every node}
defaults: {warmup_iterations: 2, min_repetitions: 10, min_duration_s: 0.4, timeout_s: 300,
           contended_cores: 4, telemetry: {sources: [host]}}
benchmarks:
  - {name: gemm-fp32, workload: kernel.gemm, each: true,
     params: {m: 512, n: 512, k: 512, dtype: fp32, device: cpu}}
  - {name: gemm-bf16, workload: kernel.gemm, each: true,
     params: {m: 512, n: 512, k: 512, dtype: bf16, device: cpu}}
  - {name: stream-copy, workload: memory.stream, each: true, params: {op: copy, size_mib: 64}}
  - {name: stream-triad, workload: memory.stream, each: true,
     params: {op: triad, size_mib: 64}}
  - {name: layernorm, workload: kernel.norm, each: true,
     params: {rows: 2048, cols: 1024, device: cpu}}
"""


def harness(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([HARNESS, *args], capture_output=True, text=True, env=env, timeout=900)


def campaign_id(output: str) -> str:
    for line in output.splitlines():
        if line.startswith("campaign unchanged-") and " ok, " in line:
            return line.split()[1].rstrip(":")
    raise RuntimeError(f"no campaign line in:\n{output[-2000:]}")


@contextlib.contextmanager
def quota(raylet_pid: int, share: float) -> Iterator[None]:
    """Hold a Ray node's raylet and everything under it to ``share`` of a CPU, as a Slurm or
    Kubernetes CPU limit holds a node; every process goes back after."""
    from tests import cgroups

    with (
        cgroups.quota_cgroup(share, prefix="hfalse") as folder,
        cgroups.held(folder, cgroups.tree(raylet_pid)),
    ):
        yield


def judge(check: subprocess.CompletedProcess) -> tuple[int, Counter, Counter, list[dict]]:
    records = json.loads(check.stdout) if check.stdout.strip() else []
    alarms = Counter(r["benchmark"] for r in records if r["failed"])
    transient = Counter(r["benchmark"] for r in records if r["verdict"] == "transient")
    return check.returncode, alarms, transient, records


LINKS = """
campaign: {name: unchanged, description: every pair of hosts}
defaults: {warmup_iterations: 2, min_repetitions: 20, min_duration_s: 0.3, timeout_s: 300,
           contended_cores: 4, telemetry: {sources: [host]}}
benchmarks:
  - {name: links, workload: network.p2p, each: true, ranks: 2, params: {size_bytes: 1048576}}
"""


@contextlib.contextmanager
def local_fleet(args: argparse.Namespace, folder: Path) -> Iterator[tuple]:
    """(run a campaign, planted or not; check one; the nodes check's records name; the
    planted node's name in them): a local cluster, its last node held by a CPU quota."""
    from harness.cluster.local import NodeSpec, local_cluster

    pb = folder / "mixed.yaml"
    pb.write_text(
        PLAYBOOK.replace("contended_cores: 4,", f"contended_cores: 4, rounds: {args.rounds},")
    )
    env = {**os.environ, "HARNESS_STATE_DIR": str(folder / "state")}
    specs = [NodeSpec(1, {"n": chr(ord("a") + i)}) for i in range(args.nodes)]
    with local_cluster(specs, prefix="hfa") as lc:
        # The last node is the one planted slow (the head, when it is the only one).
        slow_node = lc.workers[-1] if lc.workers else lc.cluster.head_node
        raylet = slow_node.all_processes["raylet"][0].process.pid

        def run(planted: bool) -> subprocess.CompletedProcess:
            held = quota(raylet, args.share) if planted else contextlib.nullcontext()
            with held:
                return harness("run", str(pb), "--db", str(folder / "r.sqlite"),
                               "--address", lc.cluster.address, "--confirm", "--no-progress",
                               env=env)  # fmt: skip

        def check(cid: str) -> subprocess.CompletedProcess:
            return harness("check", cid, "--db", str(folder / "r.sqlite"), "--format", "json",
                           env=env)  # fmt: skip

        def named(records: list[dict]) -> set[str]:
            return {
                r["node_id"][:8] for r in records if r["failed"] or "cpu_throttled" in r["flags"]
            }

        yield run, check, named, slow_node.node_id[:8]


@contextlib.contextmanager
def bed_fleet(args: argparse.Namespace, folder: Path) -> Iterator[tuple]:
    """The same over three hosts of the namespace bed (tests/netbed.py; root), every pair's
    `network.p2p`, the planted host's link shaped to ``--mbit``."""
    from tests.netbed import netbed, unavailable

    why = unavailable()
    if why:
        raise SystemExit(why)
    pb = folder / "links.yaml"
    pb.write_text(LINKS)
    db = str(folder / "r.sqlite")
    env = {"RAY_AUTH_MODE": "disabled", "HARNESS_STATE_DIR": str(folder / "state")}
    with netbed(3) as bed:
        head, slow = bed.hosts[0], bed.hosts[2]

        def run(planted: bool) -> subprocess.CompletedProcess:
            if planted:
                bed.shape(slow, args.mbit)
            try:
                return bed.run(head, HARNESS, "run", str(pb), "--db", db, "--address",
                               bed.address, "--confirm", "--no-progress", env=env)  # fmt: skip
            finally:
                bed.unshape(slow)

        def check(cid: str) -> subprocess.CompletedProcess:
            return bed.run(head, HARNESS, "check", cid, "--db", db, "--format", "json", env=env)

        def named(records: list[dict]) -> set[str]:
            return {h for r in records if r["failed"] for h in r.get("slow_hosts", [])}

        yield run, check, named, slow.hostname


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--campaigns", type=int, default=24, help="on unchanged nodes")
    ap.add_argument("--warmup", type=int, default=4, help="campaigns before the first check")
    ap.add_argument("--planted", type=int, default=3, help="campaigns with a slow node")
    ap.add_argument("--share", type=float, default=0.2, help="the slow node's CPU quota")
    ap.add_argument("--rounds", type=int, default=1, help="settings.rounds of every trial")
    ap.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="Ray nodes (all on this machine: more than one run their trials at once, so "
        "each reads the others' load, which one machine per node would not)",
    )
    ap.add_argument("--bed", action="store_true", help="three bed hosts, a shaped link planted")
    ap.add_argument("--mbit", type=float, default=200, help="the planted link's rate (--bed)")
    args = ap.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="hfalse"))
    rows = []
    fleet = bed_fleet if args.bed else local_fleet
    with fleet(args, folder) as (run_campaign, check_campaign, named_in, slow_id):
        for i in range(args.campaigns + args.planted):
            planted = i >= args.campaigns
            t0 = time.monotonic()
            run = run_campaign(planted)
            cid = campaign_id(run.stdout + run.stderr)
            if i < args.warmup:
                print(f"{i:2d} {cid} history ({time.monotonic() - t0:.0f} s)", flush=True)
                continue
            code, alarms, transient, records = judge(check_campaign(cid))
            named = named_in(records)
            rows.append((planted, code, alarms, transient, named))
            print(
                f"{i:2d} {cid} {'planted' if planted else 'unchanged'} exit {code} "
                f"alarms {dict(alarms)} transient {dict(transient)} named {sorted(named)} "
                f"({time.monotonic() - t0:.0f} s)",
                flush=True,
            )
    clean = [r for r in rows if not r[0]]
    planted = [r for r in rows if r[0]]
    false_alarms = sum(1 for r in clean if r[1] != 0)
    would_have = sum(1 for r in clean if r[1] != 0 or r[3])
    per_key = Counter()
    per_key_unconfirmed = Counter()
    for r in clean:
        per_key.update(r[2])
        per_key_unconfirmed.update(r[2] + r[3])
    print()
    print("| checks | on unchanged nodes: false alarms | without confirmation | planted: caught |")
    print("| ---: | ---: | ---: | ---: |")
    caught = sum(1 for r in planted if slow_id in r[4])
    bystander = sum(1 for r in planted if r[4] - {slow_id})
    print(f"| {len(clean)} | {false_alarms} | {would_have} | {caught} of {len(planted)} |")
    print(f"\nthe unchanged node named too in {bystander} of the {len(planted)} planted checks")
    print()
    print("| key | alarms | alarms without confirmation |")
    print("| --- | ---: | ---: |")
    for key in sorted(set(per_key) | set(per_key_unconfirmed)):
        print(f"| {key} | {per_key[key]} | {per_key_unconfirmed[key]} |")
    return 0 if false_alarms <= max(1, len(clean) // 20) and caught == len(planted) else 1


if __name__ == "__main__":
    sys.exit(main())
