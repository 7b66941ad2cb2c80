"""Limits on what a playbook may ask for, so hostile or mistaken input is refused cheaply.

Each limit is checked before the work it bounds is done (bytes before parsing, depth before
composing, alias expansion before constructing, the trial count before expanding), and each
refusal names the limit and how to raise it. The README's failure section lists them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

MIB = 2**20


@dataclass(frozen=True)
class Limits:
    """What a campaign may read and plan; the CLI's --max-* options raise them."""

    playbook_bytes: int = 1 * MIB  # the file as read; real playbooks are a few KiB
    trials: int = 100_000  # trials after expansion and placement (10M took 72 s and 3 GB)

    @classmethod
    def from_env(cls, playbook_bytes: int | None = None, trials: int | None = None) -> Limits:
        """Options first, then HARNESS_MAX_PLAYBOOK_BYTES / HARNESS_MAX_TRIALS, then defaults."""
        default = cls()
        return cls(
            playbook_bytes=playbook_bytes
            or _env_int("HARNESS_MAX_PLAYBOOK_BYTES", default.playbook_bytes),
            trials=trials or _env_int("HARNESS_MAX_TRIALS", default.trials),
        )


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
