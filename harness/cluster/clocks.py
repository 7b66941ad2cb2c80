"""Each node's wall clock against the driver's: telemetry windows, the samples of `server_on`
hosts and energy are matched by wall-clock time across hosts, so a node whose clock is off
would have its samples matched to the wrong window. Offsets are measured (the reading with
the shortest round trip of a few) at a campaign's start and end, stored with its nodes, and
each trial's times are moved onto the driver's clock by its node's offset."""

from __future__ import annotations

from dataclasses import dataclass

# Past this the campaign says so (windows are corrected, but an offset that drifts during the
# campaign is corrected only by its start and end readings); --max-clock-skew refuses.
WARN_SKEW_S = 0.5
ROUNDS = 3


@dataclass(frozen=True)
class ClockReading:
    """A node's clock minus the driver's (seconds), and the round trip it was read within:
    the offset is known to within half of it."""

    offset_s: float
    rtt_s: float


def reading(t_sent: float, t_node: float, t_back: float) -> ClockReading:
    """The offset from one exchange: the node's time against the midpoint of the driver's."""
    return ClockReading(t_node - (t_sent + t_back) / 2, t_back - t_sent)


def best(readings: list[ClockReading]) -> ClockReading:
    """The reading of the shortest round trip (the least queueing in it)."""
    return min(readings, key=lambda r: r.rtt_s)


def skew_lines(
    names: dict[str, str], readings: dict[str, ClockReading], bound_s: float
) -> list[str]:
    """One line per node whose clock is off by more than ``bound_s``."""
    return [
        f"node {names.get(node_id, node_id[:8])}: clock {r.offset_s:+.3f} s from the driver's "
        f"(read within {r.rtt_s * 1e3:.0f} ms)"
        for node_id, r in readings.items()
        if abs(r.offset_s) > bound_s
    ]
