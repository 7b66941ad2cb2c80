"""Helpers for the side-by-side benchmarks: run a playbook through the real CLI, read back."""

from __future__ import annotations

import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HARNESS = Path(sys.executable).with_name("harness")


def machine() -> str:
    """One line naming the machine the figures come from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{platform.node()}: {cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def fixed_iterations(iterations: int, warmup: int, sources: tuple[str, ...] = ("host",)) -> dict:
    """Playbook defaults for a side-by-side run: exactly ``iterations`` timed after
    ``warmup``, as the bare loop it is compared with does, host telemetry only (or the
    ``sources`` given)."""
    return {
        "warmup_iterations": warmup,
        "min_repetitions": iterations,
        "max_repetitions": iterations,
        "min_duration_s": 0,
        "telemetry": {"sources": list(sources)},
    }


def trial_settings(iterations: int, warmup: int) -> dict:
    """Settings for calling ``harness.node.runner.run_trial`` in process: ``fixed_iterations``
    without telemetry."""
    from harness.playbook.load import Settings

    return Settings(**fixed_iterations(iterations, warmup, sources=())).model_dump()


def run_playbook(playbook: dict, workdir: Path) -> tuple[sqlite3.Connection, float]:
    """`harness run` a playbook (dict) on an embedded cluster; (results db, wall seconds)."""
    path = workdir / f"pb-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(playbook))
    db = workdir / f"r-{time.monotonic_ns()}.sqlite"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(HARNESS), "run", str(path), "--db", str(db), "--no-progress"],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"harness run failed:\n{proc.stdout}\n{proc.stderr}")
    return sqlite3.connect(db), wall


def metric(db: sqlite3.Connection, benchmark_filter: str, name: str, stat: str) -> dict:
    """{params json: stat} of one metric over the campaign's trials matching a SQL filter."""
    rows = db.execute(
        f"select t.params, m.{stat} from trials t join metrics m on m.trial_id = t.id "
        f"where m.name = ? and {benchmark_filter}",
        (name,),
    )
    return dict(rows)


def median(values: list[float]) -> float:
    return statistics.median(values)


def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="hbench"))


# A word-level Hugging Face tokenizer over the client's words and the server's `w<id>`
# tokens, saved to argv[1] (run with a peer's Python, which has transformers): peers then
# count tokens as `harness serve-model` does.
WORD_TOKENIZER = """
import sys
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, PreTrainedTokenizerFast
words = sys.argv[2].split()
vocab = {"[UNK]": 0}
for w in words + [f"w{i}" for i in range(200000)]:
    vocab.setdefault(w, len(vocab))
tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
tok.decoder = decoders.WordPiece(prefix="##")  # joins tokens with spaces
# [UNK] is an ordinary token, not a special one: a peer that builds its prompts from its own
# corpus (guidellm) then decodes unknown words as "[UNK]", one word the server counts as one
# token, instead of dropping them (empty prompts, which guidellm refuses).
PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(sys.argv[1])
LlamaConfig(vocab_size=len(vocab)).save_pretrained(sys.argv[1])  # AutoTokenizer (vLLM) asks
"""
