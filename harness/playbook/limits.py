"""Limits on what a playbook may ask for, so hostile or mistaken input is refused cheaply.

Each limit is checked before the work it bounds is done (bytes before parsing, depth before
composing, alias expansion before constructing, the trial count before expanding), and each
refusal names the limit and how to raise it. The README's failure section lists them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from workloads.serving.limits import DEFAULT_MAX_REQUEST_TOKENS, MAX_TOKENS_ENV

MIB = 2**20


@dataclass(frozen=True)
class Limits:
    """What a campaign may read and plan; the CLI's --max-* options raise them."""

    playbook_bytes: int = 1 * MIB  # the file as read; real playbooks are a few KiB
    trials: int = 100_000  # trials after expansion and placement (10M took 72 s and 3 GB)
    # A serving request's prompt or output length, in tokens; the serving parameters read it
    # from $HARNESS_MAX_REQUEST_TOKENS, here and (forwarded with the trial) on the node.
    request_tokens: int = DEFAULT_MAX_REQUEST_TOKENS

    @classmethod
    def from_env(
        cls,
        playbook_bytes: int | None = None,
        trials: int | None = None,
        request_tokens: int | None = None,
    ) -> Limits:
        """Options first, then HARNESS_MAX_PLAYBOOK_BYTES / HARNESS_MAX_TRIALS /
        HARNESS_MAX_REQUEST_TOKENS, then defaults; the request-token cap is then set in the
        environment, where the serving parameters read it."""
        default = cls()
        limits = cls(
            playbook_bytes=playbook_bytes
            or _env_int("HARNESS_MAX_PLAYBOOK_BYTES", default.playbook_bytes),
            trials=trials or _env_int("HARNESS_MAX_TRIALS", default.trials),
            request_tokens=request_tokens or _env_int(MAX_TOKENS_ENV, default.request_tokens),
        )
        os.environ[MAX_TOKENS_ENV] = str(limits.request_tokens)
        return limits


# Fixed limits: no real playbook comes near them, so they have no option.
MAX_DEPTH = 32  # nesting of mappings and sequences
MAX_STRING_CHARS = 4096  # any one string: a name, a path, a URL, a description
MAX_ERROR_LINES = 20  # validation problems listed before "... and N more"
# The store bounds what a trial's failure may write: results_db.store.MAX_*_CHARS.


class LimitError(ValueError):
    """A limit given in the environment is not a positive integer."""


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise LimitError(f"${name}={raw!r}: expected a positive integer") from None
    if value < 1:
        raise LimitError(f"${name}={raw!r}: expected a positive integer")
    return value
