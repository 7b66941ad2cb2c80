"""Telemetry ingestion rate of the results store: rows/s into SQLite and PostgreSQL.

Writes trials of ``--rows`` telemetry samples each through ResultStore.record_trial (one
transaction per trial, COPY on PostgreSQL, executemany on SQLite) and reports rows/s.
PostgreSQL is measured when --pg-url is given (any reachable server).

    .venv/bin/python benchmarks/ingest.py --rows 200000 --trials 3 [--pg-url URL]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from common import machine

from results_db import (
    CampaignRecord,
    NodeRecord,
    ResultStore,
    TelemetryRecord,
    TrialRecord,
    safe_url,
    sqlite_url,
)


def rate(url: str, rows: int, trials: int) -> float:
    store = ResultStore(url)
    cid = f"ingest-{time.time_ns()}"
    store.start_campaign(
        CampaignRecord(cid, "ingest", "", "", "", "", {}, datetime.now(timezone.utc), "0")
    )
    node = store.upsert_node(NodeRecord("ingest-node", "hw", "h", {}))
    samples = [
        TelemetryRecord("host", f"cpu{i % 64}", "cpu_util", "%", 1e9 + i * 1e-3, i % 97)
        for i in range(rows)
    ]
    t0 = time.perf_counter()
    for k in range(trials):
        store.record_trial(
            TrialRecord(
                campaign_id=cid,
                trial_key=f"k{k}",
                benchmark="b",
                workload="w",
                params={},
                params_hash="p",
                status="ok",
                attempt=1,
                node_id=node,
                telemetry=samples,
            )
        )
    return rows * trials / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--pg-url", default=None)
    args = ap.parse_args()
    print(machine())
    urls = [sqlite_url(Path(tempfile.mkdtemp()) / "ingest.sqlite")]
    if args.pg_url:
        urls.append(args.pg_url)
    print(f"{args.trials} trials x {args.rows} telemetry rows each")
    print("| store | rows/s |")
    print("|---|---|")
    for url in urls:
        print(f"| {safe_url(url).split(':')[0]} | {rate(url, args.rows, args.trials):,.0f} |")


if __name__ == "__main__":
    main()
