"""The caps on what one serving request may ask for, shared by the parameters and traces,
and on the size of the files a load is read from."""

from __future__ import annotations

import os
from pathlib import Path

# The longest request asked for, in tokens (a prompt is built as that many words in memory):
# 1 Mi, the longest context windows served today. HARNESS_MAX_REQUEST_TOKENS raises it
# (`harness run/validate --max-request-tokens N` set it, and the trial's process gets it).
DEFAULT_MAX_REQUEST_TOKENS = 1 << 20
MAX_TOKENS_ENV = "HARNESS_MAX_REQUEST_TOKENS"


def max_request_tokens() -> int:
    """The cap on a request's prompt or output length, in tokens."""
    raw = os.environ.get(MAX_TOKENS_ENV, "").strip()
    try:
        value = int(raw) if raw else DEFAULT_MAX_REQUEST_TOKENS
    except ValueError:
        return DEFAULT_MAX_REQUEST_TOKENS
    return value if value > 0 else DEFAULT_MAX_REQUEST_TOKENS


def check_tokens(value: int, what: str) -> int:
    """``value`` when within the cap, else ValueError naming the cap and how to raise it."""
    cap = max_request_tokens()
    if value > cap:
        raise ValueError(
            f"{what} of {value:,} tokens is over the cap of {cap:,} "
            "(--max-request-tokens N or $HARNESS_MAX_REQUEST_TOKENS raises it)"
        )
    return value


def file_problem(path: str | Path, max_bytes: int) -> str | None:
    """Why a trace or dataset file cannot be read (missing, not a regular file, over
    ``max_bytes``), one line; None when it can."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        return str(exc.strerror or exc)
    if not p.is_file():
        return "not a regular file"
    if size > max_bytes:
        return f"{size:,} bytes, over the {max_bytes:,} limit"
    return None
