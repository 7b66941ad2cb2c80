"""How long a campaign has left, from its plan and the trials seen so far.

Each trial not yet finished is expected to take as long as the finished trials of its
benchmark took on average; before any has finished, what its settings ask for (the warm-up
and the minimum measuring time, plus set-up). The expected work left, less what the
running trials have already done, is divided by how many trials run at once.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.campaign.placement import PlacedTrial

# Set-up, warm-up and teardown of a trial before its first one finishes: a guess the first
# finished trial of each benchmark replaces.
SETUP_GUESS_S = 2.0


def prior_seconds(trial: PlacedTrial) -> float:
    """What a trial's settings ask for at least, before anything has been seen."""
    s = trial.spec.settings
    return SETUP_GUESS_S + min(s.min_duration_s, s.max_duration_s)


class Eta:
    """Seconds left in a campaign; ``clock`` is injectable so the arithmetic can be checked."""

    def __init__(
        self, trials: Sequence[PlacedTrial], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._waiting: dict[str, PlacedTrial] = {t.key: t for t in trials}
        self._running: dict[str, tuple[PlacedTrial, float]] = {}
        self._took: dict[str, list[float]] = defaultdict(list)

    def started(self, trial: PlacedTrial) -> None:
        self._waiting.pop(trial.key, None)
        self._running[trial.key] = (trial, self._clock())

    def finished(self, trial: PlacedTrial) -> None:
        self._waiting.pop(trial.key, None)
        began = self._running.pop(trial.key, (trial, None))[1]
        if began is not None:
            self._took[trial.spec.benchmark].append(self._clock() - began)

    def expected(self, trial: PlacedTrial) -> float:
        took = self._took.get(trial.spec.benchmark)
        return sum(took) / len(took) if took else prior_seconds(trial)

    def running(self) -> list[PlacedTrial]:
        """The trials running now, in the order they started."""
        return [t for t, _ in sorted(self._running.values(), key=lambda tb: tb[1])]

    def seconds_left(self) -> float | None:
        """Expected seconds until the last trial finishes; None when nothing is left."""
        if not self._waiting and not self._running:
            return None
        now = self._clock()
        work = sum(self.expected(t) for t in self._waiting.values())
        work += sum(max(0.0, self.expected(t) - (now - b)) for t, b in self._running.values())
        return work / max(1, len(self._running))


def format_eta(seconds: float | None) -> str:
    """'ETA 3m 05s' style text; empty when unknown."""
    if seconds is None:
        return ""
    s = round(seconds)
    if s >= 3600:
        return f"ETA {s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"ETA {s // 60}m {s % 60:02d}s"
    return f"ETA {s}s"
