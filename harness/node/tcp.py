"""TCP retransmissions around a network trial's measure loop, from the kernel's counters.

A link that drops packets does not fail a trial: TCP resends what was lost and the figure
comes out slow, and reads like a slow link or a slow host. The kernel counts every segment
sent and resent (``/proc/net/snmp``, ``Tcp: OutSegs RetransSegs``, per network namespace,
so the host's own count: other traffic of the host is in it too, Ray's included, which is
small beside a measurement's). A trial whose host resent at least LOSSY_SHARE of the
segments it sent in the loop is flagged ``retransmits``: its figure says as much about the
link's loss as about its rate, and ``harness check`` treats it as unreliable.
"""

from __future__ import annotations

from pathlib import Path

# Resent this share of the segments sent (and at least MIN_RETRANS of them): flagged. A
# clean link resends none in a loop (tbf shaping at 200 Mbit/s: under 0.1%, measured on the
# namespace bed); 5% loss resends several percent.
LOSSY_SHARE = 0.01
MIN_RETRANS = 10
SNMP = Path("/proc/net/snmp")


def tcp_counters(path: Path = SNMP) -> tuple[int, int] | None:
    """(segments sent, segments resent) by this host since boot, or None where not read."""
    try:
        lines = [ln.split() for ln in path.read_text().splitlines() if ln.startswith("Tcp:")]
        header, values = lines[0], lines[1]
        row = dict(zip(header[1:], values[1:], strict=True))
        return int(row["OutSegs"]), int(row["RetransSegs"])
    except (OSError, IndexError, KeyError, ValueError):
        return None


def retransmits(before: tuple[int, int] | None, after: tuple[int, int] | None) -> dict:
    """The trial's context fields for the loop between two readings: segments sent and
    resent, their share, and the ``retransmits`` flag past LOSSY_SHARE."""
    if before is None or after is None:
        return {}
    sent, resent = after[0] - before[0], after[1] - before[1]
    if sent <= 0 or resent < 0:  # counters reset (a namespace made anew): nothing to say
        return {}
    share = resent / sent
    out: dict[str, object] = {
        "tcp_segments": sent,
        "tcp_retransmits": resent,
        "tcp_retransmit_share": round(share, 5),
    }
    if share >= LOSSY_SHARE and resent >= MIN_RETRANS:
        out["retransmits"] = True
    return out
