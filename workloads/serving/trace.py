"""Timestamped request traces for ``inference.serving`` to replay: JSON Lines, one request
per line, as Mooncake's and Azure's LLM inference traces give them.

Each line is an object with
- ``timestamp``: when the request arrived (seconds, or milliseconds with ``time_unit: ms``);
  the first line's time is the start,
- ``input_length`` (or ``input_tokens``, ``prompt_len``) and ``output_length`` (or
  ``output_tokens``, ``output_len``): token counts, at least 1,
- optionally ``session_id``: turns of one conversation, in timestamp order; a turn is sent
  with the conversation so far (earlier prompts and answers) before its own new input, and
  never before the previous turn's answer has arrived.

Every problem is one line naming the file, the line and what was expected.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workloads.serving.limits import check_tokens, file_problem

MAX_TRACE_BYTES = 256 * 2**20
MAX_TRACE_LINES = 1_000_000
INPUT_KEYS = ("input_length", "input_tokens", "prompt_len")
OUTPUT_KEYS = ("output_length", "output_tokens", "output_len")


class TraceError(ValueError):
    """A trace that cannot be replayed; the message is one line."""


@dataclass(frozen=True)
class TraceRequest:
    """One request of a trace: seconds after the first, token lengths, its conversation."""

    arrival_s: float
    input_len: int
    output_len: int
    session: str | None = None
    turn: int = 0


def _length(row: dict[str, Any], keys: tuple[str, ...], where: str) -> int:
    for key in keys:
        if key in row:
            value = row[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TraceError(f"{where}: {key} must be a whole number of tokens >= 1")
            try:
                return check_tokens(value, key)
            except ValueError as exc:
                raise TraceError(f"{where}: {exc}") from None
    raise TraceError(f"{where}: no {keys[0]} (or {', '.join(keys[1:])})")


def load_trace(
    path: str | Path, *, time_unit: str = "s", speedup: float = 1.0, limit: int | None = None
) -> list[TraceRequest]:
    """The requests of a trace file in arrival order, times divided by ``speedup``, at most
    ``limit`` of them. Raises TraceError (one line) for a missing, malformed or empty file."""
    p = Path(path)
    problem = file_problem(p, MAX_TRACE_BYTES)
    if problem:
        raise TraceError(f"trace {path}: {problem}")
    scale = (1e-3 if time_unit == "ms" else 1.0) / speedup
    rows: list[tuple[float, int, int, str | None]] = []
    with p.open("rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            where = f"trace {path}:{number}"
            if len(rows) >= MAX_TRACE_LINES:
                raise TraceError(f"trace {path}: over {MAX_TRACE_LINES:,} requests")
            try:
                row = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise TraceError(f"{where}: not JSON ({str(exc).splitlines()[0]})") from None
            if not isinstance(row, dict):
                raise TraceError(f"{where}: expected an object, got {type(row).__name__}")
            ts = row.get("timestamp")
            if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
                raise TraceError(f"{where}: timestamp must be a finite number")
            session = row.get("session_id")
            rows.append(
                (
                    float(ts),
                    _length(row, INPUT_KEYS, where),
                    _length(row, OUTPUT_KEYS, where),
                    None if session is None else str(session),
                )
            )
            if limit is not None and len(rows) >= limit:
                break
    if not rows:
        raise TraceError(f"trace {path}: no requests in it")
    rows.sort(key=lambda r: r[0])  # stable: a session's turns keep their order on ties
    start = rows[0][0]
    turns: dict[str, int] = {}
    out = []
    for ts, n_in, n_out, session in rows:
        turn = 0
        if session is not None:
            turn = turns.get(session, 0)
            turns[session] = turn + 1
        out.append(TraceRequest((ts - start) * scale, n_in, n_out, session, turn))
    return out
