"""Start-up time of each CLI command beside `python -c pass`, in one run.

Goal: commands that need neither Ray nor torch (`--help`, `workloads`, `playbook validate`,
the `results` listings) answer in under 1 s. Each command runs ``--repeats`` times in a fresh
process; the table gives the median wall time, the extra over a bare interpreter, and which
heavy modules the command imported (from ``-X importtime``), so a regression names its cause.

    PYTHONPATH=. .venv/bin/python benchmarks/startup.py
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine

HEAVY = ("torch", "ray", "scipy", "sqlalchemy", "alembic", "pandas", "matplotlib")
GOAL_S = 1.0


def commands(db: Path) -> list[tuple[str, list[str], bool]]:
    """(label, argv after `python`, whether the 1 s goal applies)."""
    h = [sys.executable, "-m", "harness"]
    return [
        ("python -c pass", [sys.executable, "-c", "pass"], False),
        ("harness --help", [*h, "--help"], True),
        ("harness workloads", [*h, "workloads"], True),
        (
            "harness playbook validate smoke",
            [*h, "playbook", "validate", "playbooks/smoke.yaml"],
            True,
        ),
        ("harness results campaigns", [*h, "results", "campaigns", "--db", str(db)], True),
        ("harness results query", [*h, "results", "query", "--db", str(db)], True),
        ("harness results compare --help", [*h, "results", "compare", "--help"], True),
    ]


def heavy_imports(argv: list[str]) -> list[str]:
    """Which of HEAVY the command imported at all."""
    proc = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]], capture_output=True, text=True, check=False
    )
    seen = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    return [m for m in HEAVY if m in seen]


def wall(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=False)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "results.sqlite"
        # An empty but current store, so the results commands read rather than fail.
        subprocess.run(
            [sys.executable, "-m", "harness", "db", "upgrade", "--db", str(db)],
            check=True,
            capture_output=True,
        )
        rows = []
        for label, argv, goal in commands(db):
            wall(argv)  # warm the page cache
            times = [wall(argv) for _ in range(args.repeats)]
            rows.append((label, statistics.median(times), goal, heavy_imports(argv)))
    base = rows[0][1]
    print(f"{'command':34} {'median s':>9} {'over pass':>10}  heavy imports")
    failed = []
    for label, t, goal, heavy in rows:
        mark = ""
        if goal and t >= GOAL_S:
            mark = " (over 1 s)"
            failed.append(label)
        print(f"{label:34} {t:9.2f} {t - base:10.2f}  {', '.join(heavy) or '-'}{mark}")
    if failed:
        sys.exit(f"over the {GOAL_S:.0f} s goal: {', '.join(failed)}")


if __name__ == "__main__":
    main()
