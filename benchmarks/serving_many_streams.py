"""1,200 concurrent streams from two client ranks (`ranks: 2`) against one paced
`harness serve-model` (first token after 1 s, then one a second, 3 tokens): does the merged
trial hold every request, and do the latencies still read the server's pacing?

    .venv/bin/python benchmarks/serving_many_streams.py
"""

from __future__ import annotations

import json
import os
import sqlite3
import time

from common import machine, scratch
from typer.testing import CliRunner

from harness.cli.app import app
from harness.cluster.local import NodeSpec, local_cluster
from workloads.serving.serve_model import spawned

os.environ["RAY_AUTH_MODE"] = "disabled"  # the private cluster this script starts
STREAMS, REQUESTS = 1200, 2400
CONTEXT_KEYS = (
    "client_ranks",
    "requests_by_rank",
    "completed",
    "errors_by_kind",
    "client_cpu",
    "loop_lag_p99_ms",
    "client_bound",
)
METRICS = ("ttft", "tpot", "e2e_latency", "request_throughput", "output_throughput")


def main() -> None:
    work = scratch()
    playbook, db = work / "streams.yaml", work / "streams.db"
    with spawned("--engine", "synthetic", "--first-token-ms", "1000", "--token-ms", "1000") as url:
        playbook.write_text(
            "campaign: {name: streams}\n"
            "defaults: {telemetry: {sources: [host]}, timeout_s: 600}\n"
            "benchmarks:\n"
            "  - name: many\n"
            "    workload: inference.serving\n"
            "    ranks: 2\n"
            f"    params: {{url: '{url}', concurrency: {STREAMS}, min_requests: {REQUESTS},\n"
            "             output_len: 3, prompt_len: 8, warmup_requests: 0}\n"
        )
        with local_cluster([NodeSpec(1), NodeSpec(1)], prefix="hstreams") as cluster:
            started = time.time()
            args = ["run", str(playbook), "--db", str(db), "--address", cluster.address]
            result = CliRunner().invoke(app, [*args, "--no-progress"])
            wall = time.time() - started
    if result.exit_code != 0:
        raise SystemExit(result.output[-3000:])
    con = sqlite3.connect(db)
    print(machine())
    print(f"{STREAMS} streams, {REQUESTS} requests over 2 client ranks: {wall:.1f} s in all")
    (context,) = con.execute("select context from trials").fetchone()
    ctx = json.loads(context)
    print({k: ctx.get(k) for k in CONTEXT_KEYS})
    for name, median, p99 in con.execute(
        f"select name, median, p99 from metrics where name in {METRICS}"
    ):
        print(f"{name:>20} median {median:10.2f}  p99 {p99:10.2f}")


if __name__ == "__main__":
    main()
