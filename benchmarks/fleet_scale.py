"""`harness baseline build` and `harness check` at fleet scale: time, memory, and whether
every planted outlier is found with no false alarm.

Generates a store of ``--nodes`` nodes in 4 hardware classes, ``--campaigns`` campaigns of
``--benchmarks`` benchmarks on every node (trials = nodes x campaigns x benchmarks), each
trial with ``--samples`` raw samples (``--spread`` between trials, 1% by default as on a
quiet GPU; 1% within one; machines of a class differ by 1%). The newest
campaign has ``--outliers`` planted slow or fast nodes (0.6-0.8x or 1.2-1.4x on one
benchmark).
Rows go in with SQLAlchemy Core bulk inserts. Building the baseline and checking the
newest campaign then run in a fresh process, so its peak RSS is theirs alone.

    PYTHONPATH=. .venv/bin/python benchmarks/fleet_scale.py                 # 1,000 nodes,
        # 100,000 trials, 10,000,000 raw samples on a temporary SQLite file
    PYTHONPATH=. .venv/bin/python benchmarks/fleet_scale.py --url postgresql+psycopg://...
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from sqlalchemy import insert

from benchmarks.common import machine
from results_db import ResultStore, sqlite_url
from results_db.models import Campaign, Metric, Node, RawSample, Trial
from results_db.urls import safe_url

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
CLASSES = 4
CHUNK = 2_000  # trials per insert batch

MEASURE = r"""
import json, resource, sys, time
from results_db import ResultStore
from results_db.baseline import check, pin_baseline
url, campaign = sys.argv[1], sys.argv[2]
store = ResultStore(url, upgrade=False)
t0 = time.perf_counter()
with store.session() as s:
    entries, trials = pin_baseline(s, "scale")
t1 = time.perf_counter()
with store.session() as s:
    records = check(s, campaign)
t2 = time.perf_counter()
with store.session() as s:
    pinned = check(s, campaign, baseline="scale")
t3 = time.perf_counter()
print(json.dumps({
    "build_s": t1 - t0, "entries": entries, "trials": trials,
    "check_s": t2 - t1, "check_pinned_s": t3 - t2,
    "flagged": sorted({r["node"] for r in records if r["failed"]}),
    "flagged_pinned": sorted({r["node"] for r in pinned if r["verdict"] in ("low", "high")}),
    "judged": len(records),
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def generate(url: str, args: argparse.Namespace) -> tuple[str, set[str]]:
    """Fill the store; the newest campaign's id and the hostnames planted as outliers."""
    rng = np.random.default_rng(11)
    store = ResultStore(url)
    engine = store.engine
    hosts = [f"node{i:04d}" for i in range(args.nodes)]
    planted_nodes = rng.choice(args.nodes, size=args.outliers, replace=False)
    slow = args.outliers // 2  # clearly off, both ways: 0.6-0.8x and 1.2-1.4x
    factors = np.concatenate(
        [np.linspace(0.6, 0.8, slow), np.linspace(1.2, 1.4, args.outliers - slow)]
    )
    planted = {
        int(n): (int(rng.integers(args.benchmarks)), float(f))
        for n, f in zip(planted_nodes, factors, strict=False)
    }
    centres = 100.0 * (1 + np.arange(args.benchmarks))  # each benchmark its own scale
    class_factor = 1.0 + 0.5 * np.arange(CLASSES)
    node_factor = rng.normal(1.0, 0.01, size=args.nodes)  # machines differ a little
    with engine.begin() as conn:
        conn.execute(
            insert(Node),
            [
                {
                    "id": i + 1,
                    "fingerprint": f"fp{i}",
                    "hardware_class": f"hw{i % CLASSES}",
                    "hostname": h,
                    "facts": {},
                    "gpu_count": 0,
                    "first_seen": T0,
                    "last_seen": T0,
                }
                for i, h in enumerate(hosts)
            ],
        )
    trial_id = metric_id = 0
    last = ""
    for c in range(args.campaigns):
        cid = last = f"scale-{c:03d}"
        started = T0 + timedelta(days=c)
        with engine.begin() as conn:
            conn.execute(
                insert(Campaign),
                [
                    {
                        "id": cid,
                        "name": "scale",
                        "description": "",
                        "playbook_path": "",
                        "playbook_text": "",
                        "playbook_hash": "",
                        "effective": {},
                        "status": "completed",
                        "created_at": started,
                        "harness_version": "0",
                    }
                ],
            )
        pairs = [(n, b) for n in range(args.nodes) for b in range(args.benchmarks)]
        for start in range(0, len(pairs), CHUNK):
            batch = pairs[start : start + CHUNK]
            trials, metrics, samples = [], [], []
            for n, b in batch:
                trial_id += 1
                metric_id += 1
                centre = centres[b] * class_factor[n % CLASSES] * node_factor[n]
                centre *= rng.normal(1.0, args.spread)
                if c == args.campaigns - 1 and planted.get(n, (None,))[0] == b:
                    centre *= planted[n][1]
                values = centre * rng.normal(1.0, 0.01, size=args.samples)
                trials.append(
                    {
                        "id": trial_id,
                        "campaign_id": cid,
                        "trial_key": f"k{n}-{b}",
                        "benchmark": f"bench{b}",
                        "workload": "memory.stream",
                        "params": {"size_mib": int(b)},
                        "params_hash": f"ph{b}",
                        "node_id": n + 1,
                        "ray_node_id": f"{n:056d}",
                        "status": "ok",
                        "settings": {},
                        "context": {},
                        "started_at": started,
                        "primary_metric": "bandwidth",
                    }
                )
                median = float(np.median(values))
                metrics.append(
                    {
                        "id": metric_id,
                        "trial_id": trial_id,
                        "name": "bandwidth",
                        "unit": "GB/s",
                        "higher_is_better": True,
                        "n": args.samples,
                        "median": median,
                    }
                )
                samples += [
                    {"metric_id": metric_id, "idx": i, "value": float(v)}
                    for i, v in enumerate(values)
                ]
            with engine.begin() as conn:
                conn.execute(insert(Trial), trials)
                conn.execute(insert(Metric), metrics)
                conn.execute(insert(RawSample), samples)
    if engine.dialect.name == "postgresql":  # fresh statistics, as after any bulk load
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    return last, {hosts[n] for n in planted}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--campaigns", type=int, default=10)
    ap.add_argument("--benchmarks", type=int, default=10)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--outliers", type=int, default=6)
    ap.add_argument(
        "--spread", type=float, default=0.01, help="trial-to-trial spread (1%%: a GPU's)"
    )
    ap.add_argument("--url", help="an empty database (default: a temporary SQLite file)")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or sqlite_url(Path(tmp) / "scale.sqlite")
        trials = args.nodes * args.campaigns * args.benchmarks
        print(
            f"store: {safe_url(url)}; {args.nodes} nodes, {trials} trials, "
            f"{trials * args.samples} raw samples"
        )
        t0 = time.perf_counter()
        newest, planted = generate(url, args)
        print(f"generated in {time.perf_counter() - t0:.1f} s")
        proc = subprocess.run(
            [sys.executable, "-c", MEASURE, url, newest],
            capture_output=True,
            text=True,
            check=True,
        )
        m = json.loads(proc.stdout)
    print(
        f"baseline build: {m['build_s']:.2f} s ({m['entries']} references from "
        f"{m['trials']} trials)"
    )
    print(
        f"check {newest}: {m['check_s']:.2f} s against history ({m['judged']} trials), "
        f"{m['check_pinned_s']:.2f} s against the pinned baseline"
    )
    print(f"peak RSS of build + both checks: {m['peak_rss_mib']:.0f} MiB")
    found, false = planted & set(m["flagged"]), set(m["flagged"]) - planted
    print(f"planted outliers: {len(planted)}; found {len(found)}; false alarms {len(false)}")
    pinned_ok = set(m["flagged_pinned"]) == planted
    print(f"against the pinned baseline: {'the same' if pinned_ok else m['flagged_pinned']}")
    if found != planted or false or not pinned_ok:
        sys.exit("the check missed a planted outlier or raised a false alarm")


if __name__ == "__main__":
    main()
