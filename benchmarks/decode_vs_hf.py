"""inference.decode beside Hugging Face `generate`, same weights, same shapes, on the CPU.

A LlamaForCausalLM with the 125m preset's shapes (random weights) is saved to a temporary
folder and loaded into our decoder (`checkpoint:`), so both run the same model. Both
decode greedily for exactly --output-len tokens. HF's prefill is timed as generate with one
new token and its decode as the rest (optimum-benchmark's method); ours is timed by the
workload itself. Repetitions alternate between the two.

    .venv/bin/pip install transformers
    .venv/bin/python benchmarks/decode_vs_hf.py [--batch 1] [--seq-len 128] [--output-len 32]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import machine, scratch, trial_settings

from harness.node.runner import run_trial


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=32)
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import transformers

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    config = transformers.LlamaConfig(
        vocab_size=32000,
        hidden_size=768,
        intermediate_size=2048,
        num_hidden_layers=12,
        num_attention_heads=12,
        num_key_value_heads=12,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
    )
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(config).eval()
    folder = scratch() / "llama-125m"
    hf.save_pretrained(folder)
    hf = hf.to(dtype)
    threads = torch.get_num_threads()
    settings = trial_settings(3, 1)
    params = {
        "checkpoint": str(folder),
        "batch": args.batch,
        "seq_len": args.seq_len,
        "output_len": args.output_len,
        "dtype": args.dtype,
        "threads": threads,
    }
    prompt = torch.randint(
        0, 32000, (args.batch, args.seq_len), generator=torch.Generator().manual_seed(1)
    )
    mask = torch.ones_like(prompt)

    def hf_generate(new: int) -> tuple[float, torch.Tensor]:
        t = time.perf_counter()
        with torch.no_grad():
            out = hf.generate(
                prompt,
                attention_mask=mask,
                max_new_tokens=new,
                min_new_tokens=new,
                do_sample=False,
                pad_token_id=0,
            )
        return time.perf_counter() - t, out[:, args.seq_len :]

    hf_generate(args.output_len)  # warm-up
    ours_tps, hf_tps, ours_ttft, hf_ttft = [], [], [], []
    steps = args.output_len - 1
    for _ in range(args.repeats):
        out = run_trial("inference.decode", params, settings)
        if out.status != "ok":
            raise SystemExit(out.failure_reason)
        ours_tps += out.metrics["decode_throughput"]
        ours_ttft += out.metrics["ttft"]
        prefill, _ = hf_generate(1)
        total, _ = hf_generate(args.output_len)
        hf_tps.append(args.batch * steps / (total - prefill))
        hf_ttft.append(prefill * 1e3)
    print(machine(), f"torch {torch.__version__}, transformers {transformers.__version__}")
    print(
        f"Llama 125m shapes, {args.dtype}, batch {args.batch}, prompt {args.seq_len}, "
        f"output {args.output_len}, {threads} threads, {args.repeats} alternating repeats"
    )
    o, h = statistics.median(ours_tps), statistics.median(hf_tps)
    print(
        f"  decode tokens/s   inference.decode {o:8.1f}   HF generate {h:8.1f}   ratio {o / h:.2f}"
    )
    o, h = statistics.median(ours_ttft), statistics.median(hf_ttft)
    print(
        f"  TTFT (prefill) ms inference.decode {o:8.1f}   HF generate {h:8.1f}   ratio {o / h:.2f}"
    )


if __name__ == "__main__":
    main()
