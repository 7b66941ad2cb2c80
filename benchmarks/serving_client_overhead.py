"""How much of what inference.serving reports is the client's own delay, at 100 streams.

`harness serve-model --engine synthetic` (no model compute: the client is the busy side)
paces tokens 20 ms apart and stamps each chunk with its CLOCK_MONOTONIC send time; the
client subtracts that from its own timestamp of the chunk. That delivery delay (server
write + loopback + our read and parse) bounds the client's overhead from above; it adds to
TTFT and E2E. In ITL and TPOT (differences of timestamps) a steady delay cancels: their
error shows as the excess of the median TPOT over the server's known pacing. The goal:
under 1% of every latency reported.

    .venv/bin/python benchmarks/serving_client_overhead.py [--streams 100] [--requests 400]
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import machine, trial_settings

from harness.node.runner import run_trial
from workloads.serving.serve_model import spawned


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--token-ms", type=float, default=20.0)
    ap.add_argument("--output-len", type=int, default=64)
    args = ap.parse_args()
    settings = trial_settings(1, 0)
    serve_args = ["--engine", "synthetic", "--first-token-ms", "100"]
    with spawned(*serve_args, "--token-ms", str(args.token_ms)) as url:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        out = run_trial(
            "inference.serving",
            {
                "url": url,
                "concurrency": args.streams,
                "min_requests": args.requests,
                "prompt_len": 128,
                "output_len": args.output_len,
                "warmup_requests": args.streams,
            },
            settings,
        )
        cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    if out.status != "ok":
        raise SystemExit(out.failure_reason)
    m, ctx = out.metrics, out.context
    lag = sorted(m["client_lag"])
    print(machine())
    print(
        f"{args.streams} streams, {ctx['completed']} requests x {args.output_len} tokens, "
        f"server paces {args.token_ms:g} ms/token"
    )
    print(f"  client CPU {100 * cpu:.0f}% of one core over the run")
    print(f"  median TTFT {statistics.median(m['ttft']):.2f} ms")
    print(f"  median TPOT {statistics.median(m['tpot']):.3f} ms")
    print(f"  median ITL  {statistics.median(m['itl']):.3f} ms")
    d = ctx["delivery_delay_ms"]
    print(f"  delivery delay p50 {d['p50']:.3f} ms, p99 {d['p99']:.3f} ms, mean {d['mean']:.3f} ms")
    print(f"  loop lag p50 {lag[len(lag) // 2]:.3f} ms, p99 {lag[int(len(lag) * 0.99)]:.3f} ms")
    excess = 100 * (statistics.median(m["tpot"]) / args.token_ms - 1)
    print(f"  median TPOT exceeds the server's pacing by {excess:.3f}%")
    print(
        f"  p50 delivery delay is {ctx['client_overhead_pct_of_ttft']:.2f}% of the median TTFT, "
        f"{100 * d['p50'] / statistics.median(m['e2e_latency']):.3f}% of the median E2E"
    )


if __name__ == "__main__":
    main()
