"""A campaign's local journal: every trial record written to a file (append-only, fsynced)
before the store write, so a store that is down, full or restarting loses nothing measured.

One JSON object per line, in a file per campaign under the state folder:

- ``start``: a driver began (or resumed) the campaign: its host, process id, the store (URL
  masked) it writes to;
- ``trial``: a trial record, with an id unique in the file;
- ``stored``: the trial with that id is in the store;
- ``end``: the driver ended the campaign with a status (completed, interrupted, failed).

A line cut short by a crash (the driver killed mid-write) is ignored; a trial without its
``stored`` line is written again by replay, unless the store already holds its attempt.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from results_db.records import (
    EnergyRecord,
    MetricRecord,
    TelemetryRecord,
    TelemetrySummaryRecord,
    TrialRecord,
)

JOURNAL_SUFFIX = ".jsonl"
# How long a campaign waits out a failing store (its trials kept here meanwhile) by default.
DEFAULT_STORE_RETRY_S = 300.0
_DATETIME_FIELDS = ("started_at", "finished_at")


def state_dir() -> Path:
    """Where the harness keeps local state: $HARNESS_STATE_DIR, else the platform's user state
    folder ($XDG_STATE_HOME/harness, by default ~/.local/state/harness, on Linux)."""
    explicit = os.environ.get("HARNESS_STATE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    from platformdirs import user_state_path

    return user_state_path("harness")


def journal_dir() -> Path:
    """The folder of campaign journals."""
    return state_dir() / "journal"


def journal_path(campaign_id: str) -> Path:
    """The journal file of a campaign (ids are made of letters, digits and dashes)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in campaign_id)
    return journal_dir() / f"{safe}{JOURNAL_SUFFIX}"


def encode_trial(rec: TrialRecord) -> dict[str, Any]:
    """A trial record as JSON-ready data (datetimes as ISO text)."""
    data = asdict(rec)
    for name in _DATETIME_FIELDS:
        value = getattr(rec, name)
        data[name] = value.isoformat() if value is not None else None
    return data


def decode_trial(data: dict[str, Any]) -> TrialRecord:
    """The trial record that ``encode_trial`` wrote."""
    values = {f.name: data[f.name] for f in fields(TrialRecord) if f.name in data}
    for name in _DATETIME_FIELDS:
        if values.get(name):
            values[name] = datetime.fromisoformat(values[name])
    values["metrics"] = [MetricRecord(**m) for m in values.get("metrics", [])]
    values["telemetry"] = [TelemetryRecord(**t) for t in values.get("telemetry", [])]
    values["telemetry_summary"] = [
        TelemetrySummaryRecord(**t) for t in values.get("telemetry_summary", [])
    ]
    values["energy"] = [EnergyRecord(**e) for e in values.get("energy", [])]
    values["sources"] = [tuple(s) for s in values.get("sources", [])]
    return TrialRecord(**values)


@dataclass
class JournalState:
    """What a journal file says: the trials not yet stored, and how its last driver ended."""

    path: Path
    campaign_id: str = ""
    store: str = ""  # the masked URL of the store its drivers wrote to
    host: str = ""  # the last driver's host and process id
    pid: int | None = None
    ended: str | None = None  # the last driver's end status; None while it ran (or died)
    unstored: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> trial data

    def driver_alive(self) -> bool:
        """Whether the last driver may still run: it has not ended, and it is on another host
        (unknowable from here) or its process still exists."""
        if self.ended is not None or self.pid is None:
            return False
        if self.host != socket.gethostname():
            return True
        import psutil

        return psutil.pid_exists(self.pid)


def read_journal(path: Path) -> JournalState:
    """Parse a journal; lines cut short or not understood are skipped."""
    state = JournalState(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return state
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a write cut short by a crash
        if not isinstance(entry, dict):
            continue
        kind = entry.get("kind")
        if kind == "start":
            state.campaign_id = str(entry.get("campaign_id", ""))
            state.store = str(entry.get("store", ""))
            state.host = str(entry.get("host", ""))
            state.pid = entry.get("pid") if isinstance(entry.get("pid"), int) else None
            state.ended = None
        elif kind == "trial" and isinstance(entry.get("record"), dict):
            state.unstored[str(entry.get("id"))] = entry["record"]
        elif kind == "stored":
            state.unstored.pop(str(entry.get("id")), None)
        elif kind == "end":
            state.ended = str(entry.get("status", ""))
    return state


def stored_line(entry_id: str) -> str:
    """The line that notes a journaled trial as stored."""
    return json.dumps({"kind": "stored", "id": entry_id}) + "\n"


def mark_stored(path: Path, entry_ids: list[str]) -> None:
    """Note trials of a journal as stored (replay checks the store anyway: no fsync)."""
    with open(path, "a", encoding="utf-8") as f:
        f.writelines(stored_line(i) for i in entry_ids)


def journals() -> list[Path]:
    """Every campaign journal in the state folder, oldest first."""
    folder = journal_dir()
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f"*{JOURNAL_SUFFIX}"), key=lambda p: p.stat().st_mtime)


class Journal:
    """The append side of one campaign's journal, opened by the driver that runs it."""

    def __init__(self, campaign_id: str, store: str) -> None:
        self.path = journal_path(campaign_id)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self._append(
            {
                "kind": "start",
                "campaign_id": campaign_id,
                "store": store,
                "host": socket.gethostname(),
                "pid": os.getpid(),
            }
        )

    def _append(self, entry: dict[str, Any]) -> None:
        """Append an entry, on disk (fsynced) before this returns."""
        # Python's own reading of inf and nan (a sample may be one): the journal is read back
        # only by replay, which must store exactly what the run measured.
        self._file.write(json.dumps(entry, default=str) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def add_trial(self, rec: TrialRecord) -> str:
        """Append a trial record, on disk before this returns; its id in the journal."""
        entry_id = secrets.token_hex(8)
        self._append({"kind": "trial", "id": entry_id, "record": encode_trial(rec)})
        return entry_id

    def stored(self, entry_id: str) -> None:
        """Note that a trial is in the store (replay checks the store anyway: no fsync)."""
        self._file.write(stored_line(entry_id))
        self._file.flush()

    def end(self, status: str) -> None:
        """Note how this driver ended the campaign."""
        self._append({"kind": "end", "status": status, "pid": os.getpid()})

    def close(self, *, remove: bool = False) -> None:
        """Close the file; ``remove`` when every trial in it is stored and the campaign is
        complete (nothing left to replay)."""
        self._file.close()
        if remove:
            self.path.unlink(missing_ok=True)
