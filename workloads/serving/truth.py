"""The server's own record of what it did: ``harness serve-model --truth-log FILE``.

One JSON line per request, written when the request ends: when the server received it
(``received_ns``, on entering the handler), when it got a generation slot (``slot_ns``),
when it wrote each token (``tokens_ns``), when it wrote the end of the answer
(``done_ns``), and how it ended (``outcome``: ``ok``, an injected failure's kind, or
``gone`` when the client left first). Times are CLOCK_MONOTONIC nanoseconds, the clock
of the ``harness_sent_ns`` stamps, so a client on the same machine can line them up.

``summarize`` turns records into the figures a load generator reports, with the same
definitions as ours and vLLM's benchmark: TTFT = first token - received, E2E = done -
received, ITL = the gaps between tokens (pooled), TPOT = (E2E - TTFT) / (tokens - 1) per
request, throughput over first received -> last done. They are what a client should
read, less the loopback path between them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class TruthRecord:
    """One request as the server saw it (CLOCK_MONOTONIC ns)."""

    n: int
    received_ns: int
    slot_ns: int | None
    tokens_ns: tuple[int, ...]
    done_ns: int
    outcome: str
    prompt_tokens: int
    max_tokens: int
    first_token_planned_ms: float | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TruthRecord:
        """A record from one log line's object."""
        return cls(
            n=int(data["n"]),
            received_ns=int(data["received_ns"]),
            slot_ns=data.get("slot_ns"),
            tokens_ns=tuple(int(t) for t in data.get("tokens_ns", ())),
            done_ns=int(data["done_ns"]),
            outcome=str(data["outcome"]),
            prompt_tokens=int(data.get("prompt_tokens", 0)),
            max_tokens=int(data.get("max_tokens", 0)),
            first_token_planned_ms=data.get("first_token_planned_ms"),
        )

    def as_json(self) -> str:
        """The log line (without its newline)."""
        return json.dumps(
            {
                "n": self.n,
                "received_ns": self.received_ns,
                "slot_ns": self.slot_ns,
                "tokens_ns": list(self.tokens_ns),
                "done_ns": self.done_ns,
                "outcome": self.outcome,
                "prompt_tokens": self.prompt_tokens,
                "max_tokens": self.max_tokens,
                "first_token_planned_ms": self.first_token_planned_ms,
            },
            separators=(",", ":"),
        )

    @property
    def ok(self) -> bool:
        return self.outcome == "ok" and bool(self.tokens_ns)


def read_truth(path: Path, offset: int = 0) -> tuple[list[TruthRecord], int]:
    """The whole lines of the log from byte ``offset``, and the offset after them: a
    caller that keeps the offset reads each run's requests only."""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1  # a line still being written is left for next time
    records = [TruthRecord.from_json(json.loads(line)) for line in data[:end].splitlines() if line]
    return records, offset + end


def log_size(path: Path) -> int:
    """The log's size now (0 when there is none yet): a run's starting offset."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _pcts(values: list[float], prefix: str) -> dict[str, float]:
    if not values:
        return {}
    got = np.percentile(values, PERCENTILES)
    return {f"{prefix}_p{p}": float(v) for p, v in zip(PERCENTILES, got, strict=True)}


def summarize(records: list[TruthRecord]) -> dict[str, float]:
    """The server's figures for ``records`` (ms; req/s and tokens/s): TTFT, TPOT, ITL and
    E2E at p50/p90/p99, request and output-token throughput, and how many completed."""
    ok = [r for r in records if r.ok]
    ms = 1e-6
    ttft = [(r.tokens_ns[0] - r.received_ns) * ms for r in ok]
    e2e = [(r.done_ns - r.received_ns) * ms for r in ok]
    tpot = [
        (r.done_ns - r.tokens_ns[0]) * ms / (len(r.tokens_ns) - 1)
        for r in ok
        if len(r.tokens_ns) > 1
    ]
    itl = [(b - a) * ms for r in ok for a, b in zip(r.tokens_ns, r.tokens_ns[1:], strict=False)]
    out: dict[str, float] = {"completed": float(len(ok)), "requests": float(len(records))}
    for name, values in (("ttft", ttft), ("tpot", tpot), ("itl", itl), ("e2e", e2e)):
        out |= _pcts(values, name)
    if ok:
        span_s = (max(r.done_ns for r in ok) - min(r.received_ns for r in ok)) / 1e9
        if span_s > 0:
            out["req_s"] = len(ok) / span_s
            out["out_tok_s"] = sum(len(r.tokens_ns) for r in ok) / span_s
    return out


def schedule_lateness_ms(records: list[TruthRecord], rate: float) -> list[float]:
    """For a constant-rate load: how late each request reached the server against an even
    schedule at ``rate`` anchored at its earliest-possible start (ms, >= 0). The client's
    own lateness plus the server's accept jitter: it needs nothing from the client."""
    received = sorted(r.received_ns for r in records)
    if not received:
        return []
    gap_ns = 1e9 / rate
    offsets = [t - i * gap_ns for i, t in enumerate(received)]
    anchor = min(offsets)
    return [(o - anchor) / 1e6 for o in offsets]
