"""memory.stream (through `harness run`) against a STREAM-style C program, side by side.

Five pairs, alternating C and harness runs so drift hits both alike. Each pair compares
best against best (STREAM's convention: the minimum time of the passes after the first) and
mean rate against mean rate, for copy and triad; the median ratio over the pairs is the
figure. The C program (benchmarks/stream.c) is built here with -O3 -march=native -fopenmp.

    .venv/bin/python benchmarks/stream_vs_c.py --size-mib 256 --pairs 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from common import fixed_iterations, machine, median, metric, run_playbook, scratch

HERE = Path(__file__).parent
OPS = ("copy", "triad")


def build(workdir: Path) -> Path:
    exe = workdir / "stream"
    subprocess.run(
        ["gcc", "-O3", "-march=native", "-fopenmp", str(HERE / "stream.c"), "-o", str(exe), "-lm"],
        check=True,
    )
    return exe


def run_c(exe: Path, op: str, elements: int, passes: int, threads: int) -> tuple[float, float]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(
        [str(exe), op, str(elements), str(passes + 1)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return float(out[1]), float(out[2])  # best, mean (GB/s)


def run_torch(op: str, elements: int, passes: int) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, str(HERE / "bare_stream.py"), op, str(elements), str(passes)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return float(out[1]), float(out[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=float, default=256.0, help="per array (>= 4x the LLC)")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--passes", type=int, default=20, help="timed passes per run")
    args = ap.parse_args()
    work = scratch()
    exe = build(work)
    threads = os.cpu_count() or 1
    elements = int(args.size_mib * 2**20) // 8
    playbook = {
        "campaign": {"name": "stream-vs-c"},
        "defaults": fixed_iterations(args.passes, warmup=1),
        "benchmarks": [
            {
                "name": "stream",
                "workload": "memory.stream",
                "params": {"op": list(OPS), "size_mib": args.size_mib, "device": "cpu"},
            }
        ],
    }
    keys = ("best", "mean", "torch_best", "harness_vs_torch")
    ratios: dict[str, dict[str, list[float]]] = {op: {k: [] for k in keys} for op in OPS}
    print(machine())
    print(
        f"arrays {args.size_mib:g} MiB each, {args.passes} passes, {threads} threads, "
        f"{args.pairs} pairs"
    )
    for pair in range(args.pairs):
        c = {op: run_c(exe, op, elements, args.passes, threads) for op in OPS}
        bare = {op: run_torch(op, elements, args.passes) for op in OPS}
        db, _ = run_playbook(playbook, work)
        best = metric(db, "1=1", "bandwidth", "max")
        mean = metric(db, "1=1", "time", "mean")
        for params, value in best.items():
            op = json.loads(params)["op"]
            h_mean = (2 if op == "copy" else 3) * elements * 8 / (mean[params] / 1e3) / 1e9
            ratios[op]["best"].append(value / c[op][0])
            ratios[op]["mean"].append(h_mean / c[op][1])
            ratios[op]["torch_best"].append(bare[op][0] / c[op][0])
            ratios[op]["harness_vs_torch"].append(value / bare[op][0])
            print(
                f"pair {pair + 1} {op:5s}: C best {c[op][0]:6.2f} mean {c[op][1]:6.2f} | "
                f"bare torch best {bare[op][0]:6.2f} | harness best {value:6.2f} "
                f"mean {h_mean:6.2f} GB/s"
            )
    print("\nmedian ratios over the pairs:")
    print("| op | harness/C best | harness/C mean | bare torch/C best | harness/bare torch best |")
    print("|---|---|---|---|---|")
    for op in OPS:
        r = {k: median(v) for k, v in ratios[op].items()}
        print(
            f"| {op} | {r['best']:.3f} | {r['mean']:.3f} | {r['torch_best']:.3f} | "
            f"{r['harness_vs_torch']:.3f} |"
        )


if __name__ == "__main__":
    main()
