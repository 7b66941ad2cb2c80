"""inference.serving beside guidellm, against the same `harness serve-model` server.

Both tools send the same load: fixed concurrency, prompts of --prompt-len tokens, exactly
--output-len output tokens, --requests requests. The server runs our decoder (tiny preset)
on the CPU; its tokens are words, so a word-level tokenizer saved to a temporary folder
lets guidellm count tokens as the server does. Runs alternate (ours, guidellm, guidellm,
ours) so drift in the machine's speed falls on both.

guidellm has heavy dependencies of its own: install it in a separate virtual environment
and name its executable:

    python3 -m venv /tmp/gl && /tmp/gl/bin/pip install guidellm
    .venv/bin/python benchmarks/serving_vs_guidellm.py --guidellm /tmp/gl/bin/guidellm
    .venv/bin/python benchmarks/serving_vs_guidellm.py --guidellm /tmp/gl/bin/guidellm --paced

With --paced the server's timings are fixed (no compute), so the two clients' figures
should agree; without it, the clients share the CPUs with the decoder they measure.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

from common import WORD_TOKENIZER as TOKENIZER
from common import machine, scratch, trial_settings

from harness.node.runner import run_trial
from workloads.serving.serve_model import spawned, tiny_hf_llama, transformers_served


def ours(url: str, args: argparse.Namespace) -> dict[str, float]:
    settings = trial_settings(1, 0)
    params = {
        **args.extra_params,
        "url": url,
        "concurrency": args.concurrency,
        "min_requests": args.requests,
        "prompt_len": args.prompt_len,
        "output_len": args.output_len,
        "warmup_requests": 0,
    }
    out = run_trial("inference.serving", params, settings)
    if out.status != "ok":
        raise SystemExit(out.failure_reason)
    m = out.metrics
    return {
        "ttft_p50": statistics.median(m["ttft"]),
        "ttft_p99": _p99(m["ttft"]),
        "tpot_p50": statistics.median(m["tpot"]),
        "itl_p50": statistics.median(m["itl"]),
        "e2e_p50": statistics.median(m["e2e_latency"]),
        "req_s": m["request_throughput"][0],
        "out_tok_s": m["output_throughput"][0],
        "requests": float(out.context["completed"]),
    }


def guidellm(url: str, args: argparse.Namespace, tokenizer: Path, work: Path) -> dict[str, float]:
    report = work / f"gl-{len(list(work.iterdir()))}.json"
    cmd = [
        args.guidellm,
        "run",
        "--backend",
        f"kind=openai_http,target={url},request_format=/v1/completions"
        + (f",model={args.model}" if args.model else ""),
        "--profile",
        f"kind=concurrent,streams={args.concurrency}",
        "--data",
        f"kind=synthetic_text,prompt_tokens={args.prompt_len},output_tokens={args.output_len}",
        "--tokenizer",
        f"kind=hf_auto,model={tokenizer}",
        "--constraint",
        f"kind=max_requests,count={args.requests}",
        "--output",
        f"kind=json,path={report}",
        "--disable-console",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"guidellm failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    text = report.read_text()
    m = json.loads(text)["benchmarks"][0]["metrics"]
    if not m["request_totals"]["successful"]:
        errors = sorted(set(re.findall(r'"error": "((?:[^"\\]|\\.){0,200})', text)))
        raise SystemExit(f"guidellm completed no request; its errors: {errors[:3]}")

    def stat(name: str, key: str = "median") -> float:
        ok = m[name]["successful"]
        return ok["percentiles"][key] if key.startswith("p") else ok[key]

    return {
        "ttft_p50": stat("time_to_first_token_ms"),
        "ttft_p99": stat("time_to_first_token_ms", "p99"),
        "tpot_p50": stat("time_per_output_token_ms"),
        "itl_p50": stat("inter_token_latency_ms"),
        "e2e_p50": stat("request_latency") * 1e3,
        "req_s": stat("requests_per_second", "mean"),
        "out_tok_s": stat("output_tokens_per_second", "mean"),
        "requests": float(m["request_totals"]["successful"]),
    }


def _p99(values: list[float]) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(0.99 * (len(s) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--guidellm", required=True, help="the guidellm executable")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument(
        "--server",
        choices=("serve-model", "transformers"),
        default="serve-model",
        help="transformers: `transformers serve` (Hugging Face's) on a tiny random Llama",
    )
    ap.add_argument(
        "--paced",
        action="store_true",
        help="synthetic tokens, first after 50 ms then every 10 ms: timings the server fixes",
    )
    args = ap.parse_args()
    work = scratch()
    tokenizer = work / "tokenizer"
    from workloads.serving.client import WORDS

    python = str(Path(args.guidellm).with_name("python"))
    subprocess.run([python, "-c", TOKENIZER, str(tokenizer), " ".join(WORDS)], check=True)
    runs: dict[str, list[dict[str, float]]] = {"inference.serving": [], "guidellm": []}
    args.model, args.extra_params = None, {}
    if args.server == "transformers":
        model = tiny_hf_llama(work / "model")
        tokenizer = model  # the server's own: both clients count its tokens
        args.model = str(model)
        # It lists no model it did not download, and refuses vLLM's ignore_eos (HTTP 422).
        args.extra_params = {"model": str(model), "ignore_eos": False, "tokenizer": str(model)}
        server = ["transformers serve", str(model)]
        context = transformers_served(model, work / "hub")
    else:
        server = ["--model", "tiny"]
        if args.paced:
            server += ["--engine", "synthetic", "--first-token-ms", "50", "--token-ms", "10"]
        context = spawned(*server)
    with context as url:
        ours(url, argparse.Namespace(**{**vars(args), "requests": 8}))  # server warm-up
        for tool in ("inference.serving", "guidellm", "guidellm", "inference.serving"):
            if tool == "guidellm":
                runs[tool].append(guidellm(url, args, tokenizer, work))
            else:
                runs[tool].append(ours(url, args))
    print(machine())
    what = (
        " ".join(server)
        if args.server == "transformers"
        else "harness serve-model " + " ".join(server)
    )
    print(
        f"{what}; concurrency {args.concurrency}, "
        f"{args.requests} requests, prompt {args.prompt_len}, output {args.output_len} tokens"
    )
    keys = ("ttft_p50", "ttft_p99", "tpot_p50", "itl_p50", "e2e_p50", "req_s", "out_tok_s")
    print(f"{'':>18} " + " ".join(f"{k:>10}" for k in keys))
    for tool, results in runs.items():
        for r in results:
            print(f"{tool:>18} " + " ".join(f"{r[k]:>10.2f}" for k in keys))
    mean = {t: {k: statistics.fmean(r[k] for r in rs) for k in keys} for t, rs in runs.items()}
    ratio = " ".join(f"{mean['inference.serving'][k] / mean['guidellm'][k]:>10.3f}" for k in keys)
    print(f"{'ours / guidellm':>18} {ratio}")


if __name__ == "__main__":
    sys.exit(main())
