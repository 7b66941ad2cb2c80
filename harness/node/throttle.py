"""CPU throttling by the trial's own cgroup quota (Slurm's and Kubernetes' CPU limits), read
from the kernel's ``cpu.stat`` (cgroup v1 and v2) before and after the measure loop.

A node held to a fraction of a CPU can read the same median as its free peers (each short
iteration runs inside the quota; the stall falls between them or on a few outliers) while it
ran a fifth of the iterations: the figure is then unreliable, and nothing in it says so. The
trial records how often and how long it was throttled, and is flagged ``cpu_throttled``.
"""

from __future__ import annotations

from pathlib import Path

# Held in at least this share of the quota periods the loop spanned: flagged.
THROTTLED_SHARE = 0.05
# cgroup folder -> (quota periods with runnable tasks, periods held, throttled seconds: on
# cgroup v1 summed over the CPUs' run queues, so it can exceed the wall time)
Stat = dict[str, tuple[int, int, float]]


def _mounts() -> tuple[Path | None, Path | None]:
    """(the cgroup v1 mount holding the cpu controller, the cgroup v2 mount)."""
    v1 = v2 = None
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None, None
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, extra = left.split(), right.split()
        if len(fields) < 5 or len(extra) < 3:
            continue
        if extra[0] == "cgroup2":
            v2 = Path(fields[4])
        elif extra[0] == "cgroup" and "cpu" in extra[2].split(","):
            v1 = Path(fields[4])
    return v1, v2


def cgroup_of(pid: int | str = "self") -> tuple[Path, Path] | None:
    """(the cpu cgroup folder a process is in, the mount it is under): the v1 cpu
    controller's where there is one, else the v2 one; None where neither is read."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    v1, v2 = _mounts()
    found = None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if v1 is not None and "cpu" in controllers.split(","):
            return v1 / path.lstrip("/"), v1
        if v2 is not None and controllers == "":
            found = v2 / path.lstrip("/"), v2
    return found


def cgroup_folders() -> list[Path]:
    """The cpu cgroup folders of this process, its own first, then each ancestor up to the
    mount (a quota set on a parent throttles its children)."""
    found = cgroup_of()
    if found is None:
        return []
    own, mount = found
    folders = [own]
    while folders[-1] != mount and mount in folders[-1].parents:
        folders.append(folders[-1].parent)
    return folders


def read_stat(folders: list[Path]) -> Stat:
    """Each folder's quota periods, throttled periods and seconds (v1 ``throttled_time`` ns,
    v2 ``throttled_usec``)."""
    out: Stat = {}
    for folder in folders:
        try:
            text = (folder / "cpu.stat").read_text()
        except OSError:
            continue
        values = dict(
            (parts[0], int(parts[1]))
            for parts in (line.split() for line in text.splitlines())
            if len(parts) == 2 and parts[1].isdigit()
        )
        if "nr_throttled" not in values:
            continue
        seconds = values.get("throttled_time", 0) / 1e9 + values.get("throttled_usec", 0) / 1e6
        out[str(folder)] = (values.get("nr_periods", 0), values["nr_throttled"], seconds)
    return out


def throttling(before: Stat, after: Stat) -> dict[str, object]:
    """The trial's throttling over the window, at the cgroup level that held it most, and
    the ``cpu_throttled`` flag when it was held in THROTTLED_SHARE of the quota periods."""
    if not after:
        return {}
    worst = (0, 0, 0.0, "")
    for folder, now in after.items():
        was = before.get(folder, now)
        delta = (now[0] - was[0], now[1] - was[1], now[2] - was[2], folder)
        if delta[1] > worst[1]:
            worst = delta
    periods, held, seconds, folder = worst
    out: dict[str, object] = {"cpu_throttled_periods": held, "cpu_throttled_s": round(seconds, 4)}
    if periods > 0 and held / periods >= THROTTLED_SHARE:
        out["cpu_throttled"] = True
        out["cpu_throttled_share"] = round(held / periods, 3)  # of the quota periods
        out["cpu_throttled_cgroup"] = folder
    return out
