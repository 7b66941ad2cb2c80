"""Conversation datasets for ``inference.serving`` to send: the prompt texts a lab's users
wrote, each with the length of the answer it got, in ShareGPT's layout as vLLM's benchmark
reads it.

A file is a JSON array (ShareGPT_V3_unfiltered_cleaned_split.json) or JSON Lines of objects
``{"conversations": [{"from": "human", "value": PROMPT}, {"from": "gpt", "value": ANSWER},
...]}``. As ``vllm bench serve --dataset-name sharegpt`` does: the first turn is the prompt,
the second the answer whose length (in the model's tokenizer) is the request's output
length, conversations of fewer than two turns are left out, and so are pairs whose prompt or
answer is under 4 tokens, whose prompt is over 1024 or whose prompt and answer together are
over 2048. Every problem is one line naming the file and the entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workloads.serving.limits import file_problem
from workloads.serving.tokens import TokenCounter

MAX_DATASET_BYTES = 1024 * 2**20
MIN_TOKENS = 4  # vLLM's is_valid_sequence: shorter prompts or answers are left out
MAX_PROMPT_TOKENS = 1024
MAX_TOTAL_TOKENS = 2048


class DatasetError(ValueError):
    """A dataset that cannot be sent; the message is one line."""


@dataclass(frozen=True)
class DatasetRequest:
    """One prompt of a dataset, its length and its reference answer's, in tokens."""

    prompt: str
    input_len: int
    output_len: int


@dataclass(frozen=True)
class Dataset:
    """The usable requests of a dataset file, and how many entries were left out and why."""

    requests: list[DatasetRequest]
    entries: int
    left_out: dict[str, int]


def _entries(path: Path) -> list[Any]:
    text = path.read_bytes()
    stripped = text.lstrip()
    if stripped.startswith(b"["):
        try:
            entries = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DatasetError(f"dataset {path}: not JSON ({str(exc).splitlines()[0]})") from None
        return entries
    entries = []
    for number, raw in enumerate(text.splitlines(), 1):
        if raw.strip():
            try:
                entries.append(json.loads(raw))
            except (ValueError, UnicodeDecodeError) as exc:
                why = str(exc).splitlines()[0]
                raise DatasetError(f"dataset {path}:{number}: not JSON ({why})") from None
    return entries


def _pair(entry: Any, where: str) -> tuple[str, str] | None:
    """The first two turns' texts, or None for a conversation of fewer than two."""
    if not isinstance(entry, dict) or not isinstance(entry.get("conversations"), list):
        raise DatasetError(f"{where}: expected an object with a conversations list")
    turns = entry["conversations"]
    if len(turns) < 2:
        return None
    texts = []
    for turn in turns[:2]:
        value = turn.get("value") if isinstance(turn, dict) else None
        if not isinstance(value, str):
            raise DatasetError(f"{where}: each turn needs a text value")
        texts.append(value)
    return texts[0], texts[1]


def load_sharegpt(path: str | Path, counter: TokenCounter, limit: int | None = None) -> Dataset:
    """The usable prompts of a ShareGPT-layout file in file order, lengths counted with
    ``counter`` (the prompt with special tokens, the answer without, as vLLM counts them), at
    most ``limit``. Raises DatasetError (one line) for a missing, malformed or empty file."""
    p = Path(path)
    problem = file_problem(p, MAX_DATASET_BYTES)
    if problem:
        raise DatasetError(f"dataset {path}: {problem}")
    entries = _entries(p)
    if not isinstance(entries, list):
        raise DatasetError(f"dataset {path}: expected a list of conversations")
    requests: list[DatasetRequest] = []
    left_out = {"one turn": 0, "under 4 tokens": 0, "over the length limits": 0}
    for i, entry in enumerate(entries):
        if limit is not None and len(requests) >= limit:
            break
        pair = _pair(entry, f"dataset {path}: entry {i}")
        if pair is None:
            left_out["one turn"] += 1
            continue
        prompt, answer = pair
        n_in, n_out = counter.count(prompt, special=True), counter.count(answer)
        if n_in < MIN_TOKENS or n_out < MIN_TOKENS:
            left_out["under 4 tokens"] += 1
        elif n_in > MAX_PROMPT_TOKENS or n_in + n_out > MAX_TOTAL_TOKENS:
            left_out["over the length limits"] += 1
        else:
            requests.append(DatasetRequest(prompt, n_in, n_out))
    if not requests:
        raise DatasetError(
            f"dataset {path}: no usable conversation in it ({len(entries)} entries; "
            + ", ".join(f"{k}: {v}" for k, v in left_out.items())
            + ")"
        )
    return Dataset(requests, len(entries), left_out)
