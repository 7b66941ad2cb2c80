"""kernel.gemm fp32 (through `harness run`) against a bare PyTorch timing loop, side by side.

Five pairs, alternating; each compares the harness's median GFLOP/s with the bare loop's
median for the same shape and thread count; the median ratio over the pairs is the figure.
Also states the harness's overhead per trial, from the stored rows and the wall clock.

    .venv/bin/python benchmarks/gemm_vs_torch.py --pairs 5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from common import fixed_iterations, machine, median, run_playbook, scratch

HERE = Path(__file__).parent
SHAPES = ((1024, 1024, 1024), (2048, 2048, 2048), (1, 4096, 4096))


def bare(m: int, n: int, k: int, iters: int) -> float:
    out = subprocess.run(
        [sys.executable, str(HERE / "bare_gemm.py"), str(m), str(n), str(k), str(iters)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=30)
    args = ap.parse_args()
    work = scratch()
    playbook = {
        "campaign": {"name": "gemm-vs-torch"},
        "defaults": fixed_iterations(args.iterations, warmup=3),
        "benchmarks": [
            {
                "name": "gemm",
                "workload": "kernel.gemm",
                "params": {
                    "m": [s[0] for s in SHAPES],
                    "n": [s[1] for s in SHAPES],
                    "k": [s[2] for s in SHAPES],
                    "dtype": "fp32",
                    "device": "cpu",
                },
                "zip": [["m", "n", "k"]],
            }
        ],
    }
    ratios: dict[tuple, list[float]] = {s: [] for s in SHAPES}
    walls, measured, on_node, trials = [], [], [], 0
    print(machine())
    for pair in range(args.pairs):
        ref = {s: bare(*s, args.iterations) for s in SHAPES}
        db, wall = run_playbook(playbook, work)
        rows = db.execute(
            "select t.params, m.median, t.measure_seconds, t.started_at, t.finished_at "
            "from trials t join metrics m on m.trial_id=t.id where m.name='throughput'"
        ).fetchall()
        for params, tflops, measure_s, started, finished in rows:
            p = json.loads(params)
            shape = (p["m"], p["n"], p["k"])
            ratios[shape].append(tflops * 1e3 / ref[shape])
            span = datetime.fromisoformat(finished) - datetime.fromisoformat(started)
            on_node.append(span.total_seconds() - measure_s)
            measured.append(measure_s)
            print(
                f"pair {pair + 1} {shape}: bare {ref[shape]:7.2f} GFLOP/s | "
                f"harness {tflops * 1e3:7.2f} GFLOP/s"
            )
        walls.append(wall)
        trials += len(rows)
    print("\n| shape (m, n, k) | median ratio harness/bare |")
    print("|---|---|")
    for shape, values in ratios.items():
        print(f"| {shape} | {median(values):.3f} |")
    per_trial = (sum(walls) - sum(measured)) / trials
    print(
        f"\nharness overhead per trial: {median(on_node):.3f} s on the node (set-up, warm-up, "
        f"verification, teardown, telemetry; median), {per_trial:.2f} s end to end "
        f"including Ray start-up and inventory amortised over {len(SHAPES)} trials per run "
        f"(run wall {median(walls):.1f} s median)"
    )


if __name__ == "__main__":
    main()
