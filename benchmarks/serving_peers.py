"""inference.serving beside every serving benchmark that installs here, against the truth.

The server is `harness serve-model --engine synthetic` with planted timings and its own
record of every request (`--truth-log`): when it received the request, wrote each token and
ended the answer. Each tool's figures are compared with that record over the same requests
(the log's lines written during the tool's run), as an error in percent.

Accuracy (same server, same requests, prompt and output lengths, concurrency or rate;
tools in alternating order, --rounds rounds):
  1-stream    one request at a time
  saturation  16 streams on a server generating 4 at most (--max-running 4): queueing
  bursty      gamma arrivals, shape 0.25, at 20 requests/s, no concurrency cap
The server plants a lognormal first-token delay (mean 50 ms, sigma 0.25) and 10 ms
token gaps with +-2 ms of uniform jitter, both seeded.

Ceiling: constant-rate arrivals at rising rates against a server whose work is only a
100 ms first token (fixed: 1% of it, 1 ms, is well above this VM's loopback floor of
about 0.4 ms, printed first) and 4 output tokens without delay. Each tool runs pinned to
one core (`taskset`), the server to the other; each rate runs 1 + 3 s, its first second
not judged (connections opening). A rate is sustained when the server's record shows (a)
requests late against an even schedule by 1 ms or less at p99 (and, for a second
ceiling, 5 ms), (b) at least 97% of the rate reached, all requests answered, and (c) the
tool's median TTFT within 1% of the server's. A third column gives the rate kept by (b)
alone: what the tool can send, however late or inflated. The ladder stops at the first
rate not kept; a ceiling is the highest rate that held, with the most requests the server
held at once there (near 1 ms at p99 the strict ceiling is at the mercy of this VM's
jitter: a rung below it may miss by 0.1 ms).

Peers live in their own virtual environments (never the project's), for example:

    python3 -m venv /work/peers/aiperf && /work/peers/aiperf/bin/pip install aiperf
    python3 -m venv /work/peers/guidellm && /work/peers/guidellm/bin/pip install guidellm
    python3 -m venv /work/peers/vllm && /work/peers/vllm/bin/pip install --no-deps vllm
    # ...then vLLM's requirements less the GPU-only ones (flashinfer, cutlass, tilelang, ...)
    .venv/bin/python benchmarks/serving_peers.py --aiperf /work/peers/aiperf/bin/aiperf \\
        --guidellm /work/peers/guidellm/bin/guidellm --vllm /work/peers/vllm/bin/vllm \\
        [--rounds 3] [--only accuracy|ceiling] [--tools ours,aiperf,guidellm,vllm]

A tool whose executable is not given is listed as not run (inference-perf: every release
needs Python 3.12 or later). `HARNESS_EVENT_LOOP=asyncio` runs our client on asyncio's
own loop instead of uvloop (the server keeps uvloop), to compare the two.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from common import WORD_TOKENIZER as TOKENIZER
from common import machine, scratch

from workloads.serving.truth import TruthRecord, log_size, read_truth, schedule_lateness_ms
from workloads.serving.truth import summarize as truth_summary

HARNESS = Path(sys.executable).with_name("harness")
SERVER_CORE, CLIENT_CORE = "0", "1"
ROWS = [
    *(f"{m}_p{p}" for m in ("ttft", "tpot", "itl", "e2e") for p in (50, 90, 99)),
    "req_s",
    "out_tok_s",
]
NOT_INSTALLABLE = {
    "inference-perf": "not installable here: every release on PyPI requires Python >= 3.12 "
    "(this machine has 3.11)",
}


PLANTED = [
    "--first-token-ms", "50", "--first-token-dist", "lognormal", "--first-token-spread", "0.25",
    "--token-ms", "10", "--token-jitter-ms", "2",
]  # fmt: skip


@dataclass(frozen=True)
class Load:
    """One load every tool sends: requests, lengths, and concurrency or rate."""

    requests: int
    prompt_len: int
    output_len: int
    concurrency: int | None = None
    rate: float | None = None
    arrival: str = "poisson"  # with a rate: poisson | gamma | constant
    burstiness: float = 1.0


@dataclass(frozen=True)
class Scenario:
    name: str
    server: list[str]
    load: Load


SCENARIOS = [
    Scenario("1-stream", PLANTED, Load(30, 32, 16, concurrency=1)),
    Scenario("saturation", [*PLANTED, "--max-running", "4"], Load(80, 32, 16, concurrency=16)),
    Scenario("bursty", PLANTED, Load(80, 32, 16, rate=20, arrival="gamma", burstiness=0.25)),
]
CEILING_SERVER = ["--first-token-ms", "100"]


@dataclass
class Tool:
    """A load generator: its name, how to run a load (None when it cannot), its reason."""

    name: str
    run: Callable[[str, Load, Path], dict[str, float]] | None
    why_not: str = ""
    cannot: dict[str, str] = field(default_factory=dict)  # arrival kind -> why not


# --- the loopback floor: what no client on this machine can read below -------------------

FLOOR = """
import asyncio, os, sys, time
role, port = sys.argv[1], int(sys.argv[2])
async def serve():
    async def handle(r, w):
        while line := await r.readline():
            got = time.monotonic_ns()
            await asyncio.sleep(0.05)  # idle, as before a first token
            w.write(f"{got} {time.monotonic_ns()}\\n".encode())
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()
async def ping():
    r, w = await asyncio.open_connection("127.0.0.1", port)
    up, down = [], []
    for _ in range(60):
        t0 = time.monotonic_ns()
        w.write(b"x\\n")
        got, sent = map(int, (await r.readline()).split())
        down.append(time.monotonic_ns() - sent)
        up.append(got - t0)
    up.sort(); down.sort()
    print(up[30] / 1e3, down[30] / 1e3)
asyncio.run(serve() if role == "serve" else ping())
"""


def loopback_floor() -> tuple[float, float]:
    """One-way delays (us, p50) of a bare asyncio stream between the two pinned cores, the
    server idle 50 ms before each answer: the part of any tool's TTFT error that is this
    machine's (waking an idle core), not the tool's."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    serve = ["taskset", "-c", SERVER_CORE] if shutil.which("taskset") else []
    proc = subprocess.Popen(
        [*serve, sys.executable, "-c", FLOOR, "serve", str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        out = subprocess.run(
            _pinned([sys.executable, "-c", FLOOR, "ping", str(port)]),
            capture_output=True,
            text=True,
            check=True,
        )
        up, down = (float(v) for v in out.stdout.split())
        return up, down
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- ours: a child process, so that it can be pinned like the others ----------------------

OURS_CHILD = """
import json, sys
from harness.node.runner import run_trial
from harness.playbook.load import Settings
params = json.loads(sys.argv[1])
settings = Settings(warmup_iterations=0, min_repetitions=1, max_repetitions=1,
                    min_duration_s=0, telemetry={"sources": []}).model_dump()
out = run_trial("inference.serving", params, settings)
print(json.dumps({"status": out.status, "reason": out.failure_reason,
                  "metrics": out.metrics, "context": out.context}, default=str))
"""


def _pinned(cmd: list[str]) -> list[str]:
    return ["taskset", "-c", CLIENT_CORE, *cmd] if shutil.which("taskset") else cmd


def run_ours(url: str, load: Load, work: Path) -> dict[str, float]:
    params: dict[str, Any] = {
        "url": url,
        "min_requests": load.requests,
        "prompt_len": load.prompt_len,
        "output_len": load.output_len,
        "warmup_requests": 0,
        "server_metrics": False,
    }
    if load.concurrency:
        params["concurrency"] = load.concurrency
    if load.rate:
        params["rate"] = load.rate
        params["arrival"] = "constant" if load.arrival == "constant" else "gamma"
        params["burstiness"] = load.burstiness
    proc = subprocess.run(
        _pinned([sys.executable, "-c", OURS_CHILD, json.dumps(params)]),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    if proc.returncode != 0:
        raise SystemExit(f"ours failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out["status"] != "ok":
        raise SystemExit(f"ours failed: {out['reason']}")
    m, ctx = out["metrics"], out["context"]
    got: dict[str, float] = {}
    for name, key in (("ttft", "ttft"), ("tpot", "tpot"), ("itl", "itl"), ("e2e", "e2e_latency")):
        for p in (50, 90, 99):
            got[f"{name}_p{p}"] = float(np.percentile(m[key], p))
    got["req_s"] = m["request_throughput"][0]
    got["out_tok_s"] = m["output_throughput"][0]
    got["completed"] = float(ctx["completed"])
    got["client_bound"] = float(bool(ctx.get("client_bound")))
    got["send_lag_p99_ms"] = float(ctx.get("send_lag_p99_ms", 0.0))
    got["client_cpu"] = float(ctx.get("client_cpu", 0.0))
    got["loop_lag_p99_ms"] = float(ctx.get("loop_lag_p99_ms", 0.0))
    return got


# --- AIPerf ---------------------------------------------------------------------------------


def aiperf_runner(exe: str, tokenizer: Path, model: str) -> Callable[..., dict[str, float]]:
    def run(url: str, load: Load, work: Path) -> dict[str, float]:
        out = work / f"aiperf-{time.monotonic_ns()}"
        cmd = [
            exe, "profile", "--model", model, "--url", url, "--endpoint-type", "completions",
            "--streaming", "--tokenizer", str(tokenizer), "--use-server-token-count",
            "--prompt-input-tokens-mean", str(load.prompt_len),
            "--prompt-input-tokens-stddev", "0",
            "--prompt-output-tokens-mean", str(load.output_len),
            "--prompt-output-tokens-stddev", "0",
            "--request-count", str(load.requests),
            "--output-artifact-dir", str(out), "--ui-type", "none", "--random-seed", "0",
            "--no-server-metrics", "--no-gpu-telemetry",
        ]  # fmt: skip
        if load.concurrency:
            cmd += ["--concurrency", str(load.concurrency)]
        if load.rate:
            cmd += ["--request-rate", str(load.rate), "--arrival-pattern", load.arrival]
            if load.arrival == "gamma":
                cmd += ["--arrival-smoothness", str(load.burstiness)]
        proc = subprocess.run(_pinned(cmd), capture_output=True, text=True, cwd=work)
        found = list(out.rglob("profile_export_aiperf.json"))
        if proc.returncode != 0 or not found:
            raise SystemExit(f"aiperf failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        data = json.loads(found[0].read_text())
        return _aiperf_figures(data)

    return run


def _aiperf_figures(data: dict[str, Any]) -> dict[str, float]:
    metrics = data.get("records") or data

    def stat(tag: str, key: str) -> float:
        return float(metrics[tag][key])

    got: dict[str, float] = {}
    # AIPerf's "inter_token_latency" is per request, (E2E - TTFT) / (tokens - 1): our
    # TPOT; its "inter_chunk_latency" is the gaps between chunks: our ITL.
    for name, tag in (
        ("ttft", "time_to_first_token"),
        ("tpot", "inter_token_latency"),
        ("itl", "inter_chunk_latency"),
        ("e2e", "request_latency"),
    ):
        if tag in metrics:
            for p in (50, 90, 99):
                got[f"{name}_p{p}"] = stat(tag, f"p{p}")
    got["req_s"] = stat("request_throughput", "avg")
    got["out_tok_s"] = stat("output_token_throughput", "avg")
    if "request_count" in metrics:
        got["completed"] = stat("request_count", "avg")
    return got


# --- guidellm -------------------------------------------------------------------------------


def guidellm_runner(exe: str, tokenizer: Path) -> Callable[..., dict[str, float]]:
    def run(url: str, load: Load, work: Path) -> dict[str, float]:
        report = work / f"guidellm-{time.monotonic_ns()}.json"
        if load.concurrency and not load.rate:
            profile = f"kind=concurrent,streams={load.concurrency}"
        elif load.arrival in ("constant", "poisson"):
            profile = f"kind={load.arrival},rate={load.rate}"
        else:
            raise ValueError(f"guidellm has no {load.arrival} arrivals")
        cmd = [
            exe, "run",
            "--backend", f"kind=openai_http,target={url},request_format=/v1/completions",
            "--profile", profile,
            "--data", f"kind=synthetic_text,prompt_tokens={load.prompt_len},"
            f"output_tokens={load.output_len}",
            "--tokenizer", f"kind=hf_auto,model={tokenizer}",
            "--constraint", f"kind=max_requests,count={load.requests}",
            "--output", f"kind=json,path={report}",
            "--disable-console",
        ]  # fmt: skip
        proc = subprocess.run(_pinned(cmd), capture_output=True, text=True, cwd=work)
        if proc.returncode != 0 or not report.exists():
            raise SystemExit(f"guidellm failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        m = json.loads(report.read_text())["benchmarks"][0]["metrics"]
        return _guidellm_figures(m)

    return run


def _guidellm_figures(m: dict[str, Any]) -> dict[str, float]:
    def ok(name: str) -> dict[str, Any]:
        return m[name]["successful"]

    got: dict[str, float] = {}
    # guidellm's "inter_token_latency_ms" is per request, (last - first token) /
    # (tokens - 1): our TPOT. It keeps no gaps between chunks (no ITL to compare).
    for name, key, scale in (
        ("ttft", "time_to_first_token_ms", 1.0),
        ("tpot", "inter_token_latency_ms", 1.0),
        ("e2e", "request_latency", 1e3),
    ):
        for p in (50, 90, 99):
            got[f"{name}_p{p}"] = scale * ok(key)["percentiles"][f"p{p}"]
    got["req_s"] = ok("requests_per_second")["mean"]
    got["out_tok_s"] = ok("output_tokens_per_second")["mean"]
    got["completed"] = float(m["request_totals"]["successful"])
    return got


# --- vLLM's benchmark -----------------------------------------------------------------------


def vllm_runner(exe: str, tokenizer: Path, model: str) -> Callable[..., dict[str, float]]:
    def run(url: str, load: Load, work: Path) -> dict[str, float]:
        name = f"vllm-{time.monotonic_ns()}.json"
        cmd = [
            exe, "bench", "serve", "--backend", "openai", "--base-url", url,
            "--endpoint", "/v1/completions", "--model", model, "--tokenizer", str(tokenizer),
            "--dataset-name", "random", "--random-input-len", str(load.prompt_len),
            "--random-output-len", str(load.output_len), "--random-range-ratio", "0",
            "--num-prompts", str(load.requests), "--ignore-eos", "--seed", "0",
            "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99",
            "--save-result", "--result-dir", str(work), "--result-filename", name,
            "--disable-tqdm",
        ]  # fmt: skip
        if load.concurrency:
            cmd += ["--max-concurrency", str(load.concurrency)]
        if load.rate:
            cmd += ["--request-rate", str(load.rate)]
            # vLLM draws gamma gaps only; a shape of 1e6 has a CV of 0.001: constant.
            shape = {"constant": 1e6, "poisson": 1.0}.get(load.arrival, load.burstiness)
            cmd += ["--burstiness", str(shape)]
        else:
            cmd += ["--request-rate", "inf"]
        proc = subprocess.run(_pinned(cmd), capture_output=True, text=True, cwd=work)
        report = work / name
        if proc.returncode != 0 or not report.exists():
            raise SystemExit(f"vllm failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        return _vllm_figures(json.loads(report.read_text()))

    return run


def _vllm_figures(data: dict[str, Any]) -> dict[str, float]:
    got: dict[str, float] = {}
    for name, key in (("ttft", "ttft"), ("tpot", "tpot"), ("itl", "itl"), ("e2e", "e2el")):
        for p in (50, 90, 99):
            got[f"{name}_p{p}"] = float(data[f"p{p}_{key}_ms"])
    got["req_s"] = float(data["request_throughput"])
    got["out_tok_s"] = float(data["output_throughput"])
    got["completed"] = float(data["completed"])
    return got


# --- the server and its record --------------------------------------------------------------


@contextlib.contextmanager
def served(args: list[str], log: Path) -> Iterator[str]:
    """`harness serve-model --engine synthetic ARGS --truth-log LOG`, pinned to its core."""
    cmd = [str(HARNESS), "serve-model", "--engine", "synthetic", "--port", "0", *args]
    cmd += ["--truth-log", str(log)]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", SERVER_CORE, *cmd]
    # HARNESS_EVENT_LOOP=asyncio compares our client's loops; the server keeps its own.
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_EVENT_LOOP"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"on (http://\S+)", line)
        if not match:
            raise SystemExit(f"serve-model did not start: {line}{proc.stdout.read()}")
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def measured(
    tool: Tool, url: str, load: Load, log: Path, work: Path
) -> tuple[dict[str, float], list[TruthRecord]]:
    """The tool's figures for one load, and the server's records of the same requests."""
    assert tool.run is not None
    start = log_size(log)
    got = tool.run(url, load, work)
    time.sleep(0.2)  # the last line is written when its request ends
    records, _ = read_truth(log, start)
    return got, records


def arrival_rate(records: list[TruthRecord]) -> float:
    """Requests per second as they reached the server (first to last arrival)."""
    received = sorted(r.received_ns for r in records)
    if len(received) < 2 or received[-1] == received[0]:
        return 0.0
    return (len(received) - 1) / ((received[-1] - received[0]) / 1e9)


def error_pct(got: float | None, truth: float | None) -> float | None:
    if got is None or not truth:
        return None
    return 100.0 * (got - truth) / truth


# --- accuracy -------------------------------------------------------------------------------


def accuracy(tools: list[Tool], rounds: int, work: Path) -> None:
    for sc in SCENARIOS:
        log = work / f"truth-{sc.name}.jsonl"
        errors: dict[str, dict[str, list[float]]] = {t.name: {} for t in tools}
        counts: dict[str, list[str]] = {t.name: [] for t in tools}
        with served(sc.server, log) as url:
            able = [t for t in tools if t.run and sc.load.arrival not in t.cannot]
            for r in range(rounds):
                order = able if r % 2 == 0 else able[::-1]
                for tool in order:
                    got, records = measured(tool, url, sc.load, log, work)
                    truth = truth_summary(records)
                    counts[tool.name].append(
                        f"{got.get('completed', float('nan')):.0f}/{truth['completed']:.0f}"
                    )
                    for row in ROWS:
                        e = error_pct(got.get(row), truth.get(row))
                        if e is not None:
                            errors[tool.name].setdefault(row, []).append(e)
        _print_accuracy(sc, tools, errors, counts)


def _print_accuracy(
    sc: Scenario,
    tools: list[Tool],
    errors: dict[str, dict[str, list[float]]],
    counts: dict[str, list[str]],
) -> None:
    load = sc.load
    how = (
        f"{load.concurrency} streams"
        if load.concurrency
        else f"{load.rate:g} req/s {load.arrival} (shape {load.burstiness:g})"
    )
    print(
        f"\n## {sc.name}: {how}, {load.requests} requests, {load.prompt_len} in / "
        f"{load.output_len} out; serve-model {' '.join(sc.server)}"
    )
    print("error against the server's record, % (mean over rounds; smallest |error| marked *)")
    names = [t.name for t in tools]
    print(f"| {'':<12} | " + " | ".join(f"{n:>16}" for n in names) + " |")
    print("|" + "---|" * (len(names) + 1))
    for row in ROWS:
        means = {n: float(np.mean(errors[n][row])) for n in names if errors[n].get(row)}
        best = min(means, key=lambda n: abs(means[n])) if means else None
        cells = []
        for t in tools:
            if t.name in means:
                mark = "*" if t.name == best else " "
                cells.append(f"{means[t.name]:+15.2f}{mark}")
            elif not t.run:
                cells.append(f"{'not run':>16}")
            elif load.arrival in t.cannot:
                cells.append(f"{'cannot':>16}")
            else:
                cells.append(f"{'not reported':>16}")
        print(f"| {row:<12} | " + " | ".join(cells) + " |")
    done = " | ".join(f"{n}: {', '.join(counts[n]) or '-'}" for n in names)
    print(f"completed (tool/server) per round: {done}")
    for t in tools:
        if load.arrival in t.cannot:
            print(f"  {t.name}: {t.cannot[load.arrival]}")


# --- ceiling --------------------------------------------------------------------------------


LATE_LIMITS_MS = (1.0, 5.0)  # the strict limit, and a looser one to compare capacity
WARM_S = 1.0  # each rate's first second is not judged


def max_in_flight(records: list[TruthRecord]) -> int:
    """The most requests the server held at once (received -> done)."""
    events = sorted([(r.received_ns, 1) for r in records] + [(r.done_ns, -1) for r in records])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def ceiling(tools: list[Tool], rates: list[float], seconds: float, work: Path) -> None:
    print(
        f"\n## Client ceiling: constant arrivals, {WARM_S:g} + {seconds:g} s per rate (the first "
        f"second not judged), 8 in / 4 out; "
        f"serve-model {' '.join(CEILING_SERVER)}; tool on core {CLIENT_CORE}, "
        f"server on core {SERVER_CORE}"
    )
    print(
        "a rate holds when, from the server's record: late p99 <= 1 ms (or <= 5 ms), >= 97% "
        "of the rate reached, all answered, and the tool's TTFT p50 within 1% of the server's"
    )
    log = work / "truth-ceiling.jsonl"
    best: dict[str, list[tuple[float, int]]] = {}
    first_fail: dict[str, str] = {}
    with served(CEILING_SERVER, log) as url:
        for tool in tools:
            if not tool.run or "constant" in tool.cannot:
                continue
            held = [(0.0, 0) for _ in range(len(LATE_LIMITS_MS) + 1)]
            for rate in rates:
                n = max(20, int(rate * (seconds + WARM_S)))
                load = Load(n, 8, 4, rate=rate, arrival="constant")
                try:
                    got, records = measured(tool, url, load, log, work)
                except SystemExit as exc:  # the tool itself gave up at this rate
                    why = str(exc).strip().splitlines()[-1][:200]
                    print(f"  {tool.name:>16} {rate:>6g} req/s: the tool failed: {why}")
                    first_fail[tool.name] = f"{rate:g} req/s: the tool failed"
                    break
                truth = truth_summary(records)
                # Steady state: the first second's requests (connections being opened, code
                # run for the first time) are left out, for every tool alike.
                late = schedule_lateness_ms(records, rate)[int(rate * WARM_S) :]
                late_p99 = float(np.percentile(late, 99)) if late else float("inf")
                reached = arrival_rate(records) / rate
                ttft_err = error_pct(got.get("ttft_p50"), truth.get("ttft_p50"))
                answered = truth["completed"] >= load.requests
                keeps_up = reached >= 0.97 and answered
                true_ttft = ttft_err is not None and abs(ttft_err) <= 1
                streams = max_in_flight(records)
                for i, limit in enumerate(LATE_LIMITS_MS):
                    if keeps_up and true_ttft and late_p99 <= limit:
                        held[i] = (rate, streams)
                if keeps_up:
                    held[-1] = (rate, streams)
                extra = ""
                if "client_bound" in got:
                    extra = (
                        f", client_bound {bool(got['client_bound'])}"
                        f" (its send lag p99 {got['send_lag_p99_ms']:.2f} ms, loop lag "
                        f"p99 {got['loop_lag_p99_ms']:.2f} ms, CPU {100 * got['client_cpu']:.0f}%)"
                    )
                line = (
                    f"late p99 {late_p99:7.2f} ms, reached {100 * reached:5.1f}%, answered "
                    f"{truth['completed']:.0f}/{load.requests}, TTFT p50 error "
                    f"{'-' if ttft_err is None else f'{ttft_err:+.2f}%'}, {streams} in flight"
                )
                print(f"  {tool.name:>16} {rate:>6g} req/s: {line}{extra}", flush=True)
                if not keeps_up:
                    first_fail[tool.name] = f"{rate:g} req/s: {line}"
                    break
            best[tool.name] = held
    print(
        "\n| tool | late p99 <= 1 ms, TTFT within 1% (req/s; streams) | late p99 <= 5 ms, "
        "TTFT within 1% | rate kept (>= 97%, all answered) | first rate not kept |"
    )
    print("|---|---|---|---|---|")
    for tool in tools:
        if tool.name in best:
            cells = [f"{r:g}; {n}" for r, n in best[tool.name]]
            print(f"| {tool.name} | {' | '.join(cells)} | {first_fail.get(tool.name, '-')} |")
        else:
            why = tool.why_not or "cannot send constant arrivals"
            print(f"| {tool.name} | {why} | | | |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--aiperf", help="the aiperf executable (in its own venv)")
    ap.add_argument("--guidellm", help="the guidellm executable (in its own venv)")
    ap.add_argument("--vllm", help="the vllm executable (in its own venv)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--only", choices=("accuracy", "ceiling"))
    ap.add_argument(
        "--rates",
        default="25,50,100,200,400,800,1200,1600,2000,2400,3200,4000,4800",
        help="ceiling ladder",
    )
    ap.add_argument("--seconds", type=float, default=3.0, help="per ceiling rate")
    ap.add_argument("--tools", help="comma-separated subset: ours,aiperf,guidellm,vllm")
    args = ap.parse_args()
    work = scratch()
    from workloads.serving.client import WORDS

    tools = [Tool("inference.serving", run_ours)]
    peer_python = next(
        (Path(p).with_name("python") for p in (args.aiperf, args.guidellm, args.vllm) if p), None
    )
    tokenizer = work / "tokenizer"
    if peer_python is not None:  # the peers' venvs have transformers; ours need not
        subprocess.run(
            [str(peer_python), "-c", TOKENIZER, str(tokenizer), " ".join(WORDS)], check=True
        )
    model = "harness-llama-tiny"
    tools.append(
        Tool("aiperf", aiperf_runner(args.aiperf, tokenizer, model))
        if args.aiperf
        else Tool("aiperf", None, "not given (--aiperf)")
    )
    tools.append(
        Tool(
            "guidellm",
            guidellm_runner(args.guidellm, tokenizer),
            cannot={"gamma": "guidellm 0.8 has no gamma arrivals (constant or Poisson only)"},
        )
        if args.guidellm
        else Tool("guidellm", None, "not given (--guidellm)")
    )
    tools.append(
        Tool("vllm bench serve", vllm_runner(args.vllm, tokenizer, model))
        if args.vllm
        else Tool("vllm bench serve", None, "not given (--vllm)")
    )
    for name, why in NOT_INSTALLABLE.items():
        tools.append(Tool(name, None, why))
    if args.tools:
        keep = {"ours": "inference.serving", "vllm": "vllm bench serve"}
        keep |= {n: n for n in ("aiperf", "guidellm")}
        wanted = {keep[n.strip()] for n in args.tools.split(",")}
        tools = [t for t in tools if t.name in wanted or not t.run]
    print(machine())
    up, down = loopback_floor()
    print(
        f"loopback floor (bare asyncio, core {CLIENT_CORE} <-> core {SERVER_CORE}, idle 50 ms): "
        f"send -> received p50 {up:.0f} us, written -> read p50 {down:.0f} us"
    )
    for t in tools:
        if not t.run:
            print(f"  {t.name}: {t.why_not}")
    if args.only != "ceiling":
        accuracy(tools, args.rounds, work)
    if args.only != "accuracy":
        rates = [float(r) for r in args.rates.split(",")]
        ceiling(tools, rates, args.seconds, work)


if __name__ == "__main__":
    sys.exit(main())
