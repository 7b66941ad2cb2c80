"""A campaign driver's heartbeat, and the rule that turns a silent `running` campaign into
`abandoned` (its driver was killed, or its machine died) for every reader."""

from __future__ import annotations

import os
import threading
from datetime import datetime, timezone

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from results_db.models import Campaign

DEFAULT_INTERVAL_S = 30.0
MISSED_BEATS = 4  # abandoned after this many intervals without a beat


def interval_s() -> float:
    """Seconds between beats: $HARNESS_HEARTBEAT_S (tests shorten it), else 30."""
    try:
        value = float(os.environ.get("HARNESS_HEARTBEAT_S", DEFAULT_INTERVAL_S))
    except ValueError:
        return DEFAULT_INTERVAL_S
    return value if value > 0 else DEFAULT_INTERVAL_S


def grace_s() -> float:
    """How long a running campaign may be silent before it counts as abandoned."""
    return MISSED_BEATS * interval_s()


def seconds_since_beat(campaign: Campaign, now: datetime) -> float | None:
    """Seconds since the driver's last beat; campaigns stored before heartbeats existed
    count from their creation."""
    last = campaign.heartbeat_at or campaign.created_at
    if last is None:
        return None
    if last.tzinfo is None:  # SQLite returns naive UTC
        last = last.replace(tzinfo=timezone.utc)
    return (now - last).total_seconds()


def shown_status(campaign: Campaign, now: datetime) -> str:
    """The status to show: ``abandoned`` for a running campaign whose driver went silent."""
    silent = seconds_since_beat(campaign, now)
    if campaign.status == "running" and silent is not None and silent > grace_s():
        return "abandoned"
    return campaign.status


class Heartbeat:
    """Writes ``heartbeat_at`` of a campaign every interval from a daemon thread."""

    def __init__(self, sessions: sessionmaker[Session], campaign_id: str) -> None:
        self._sessions = sessions
        self._campaign_id = campaign_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="harness-heartbeat", daemon=True)

    def beat(self) -> None:
        try:
            with self._sessions.begin() as s:
                s.execute(
                    update(Campaign)
                    .where(Campaign.id == self._campaign_id)
                    .values(heartbeat_at=datetime.now(timezone.utc))
                )
        except SQLAlchemyError:
            pass  # a missed beat is harmless; the campaign's own writes report real trouble

    def _run(self) -> None:
        while not self._stop.wait(interval_s()):
            self.beat()

    def __enter__(self) -> Heartbeat:
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
