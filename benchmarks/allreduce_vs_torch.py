"""collective.all_reduce over gloo through `harness run` (2 ranks on 2 nodes of a local Ray
cluster) against a bare torch.distributed script (2 processes), same sizes, same machine.

Five pairs, alternating; each compares median algbw (per-iteration mean of the ranks' times,
both sides); the median ratio over the pairs is the figure.

    .venv/bin/python benchmarks/allreduce_vs_torch.py --pairs 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

from common import fixed_iterations, machine, median, run_playbook, scratch

HERE = Path(__file__).parent
SIZES = (1 << 20, 16 << 20, 64 << 20)


def bare(iters: int) -> dict[int, float]:
    out = subprocess.run(
        [sys.executable, str(HERE / "bare_allreduce.py"), str(iters), *map(str, SIZES)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {int(s): float(v) for s, v in (line.split() for line in out.strip().splitlines())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=20)
    args = ap.parse_args()
    from harness.cluster.local import NodeSpec, local_cluster

    stack = contextlib.ExitStack()
    cluster = stack.enter_context(local_cluster([NodeSpec(1), NodeSpec(1)], prefix="hab"))
    os.environ["RAY_ADDRESS"] = cluster.address
    work = scratch()
    playbook = {
        "campaign": {"name": "allreduce-vs-torch"},
        "defaults": fixed_iterations(args.iterations, warmup=3),
        "benchmarks": [
            {
                "name": "ar",
                "workload": "collective.all_reduce",
                "ranks": 2,
                "params": {"size_bytes": list(SIZES)},
            }
        ],
    }
    ratios: dict[int, list[float]] = {s: [] for s in SIZES}
    print(machine())
    print(f"2 ranks, one per Ray node, gloo over loopback TCP, {args.iterations} iterations")
    try:
        for pair in range(args.pairs):
            ref = bare(args.iterations)
            db, _ = run_playbook(playbook, work)
            for params, algbw in db.execute(
                "select t.params, m.median from trials t join metrics m on m.trial_id=t.id "
                "where m.name='algbw'"
            ):
                size = json.loads(params)["size_bytes"]
                ratios[size].append(algbw / ref[size])
                print(
                    f"pair {pair + 1} {size >> 20:4d} MiB: bare {ref[size]:.3f} GB/s | "
                    f"harness {algbw:.3f} GB/s"
                )
    finally:
        stack.close()
    print("\n| size | median ratio harness/bare (algbw) |")
    print("|---|---|")
    for size, values in ratios.items():
        print(f"| {size >> 20} MiB | {median(values):.3f} |")


if __name__ == "__main__":
    main()
