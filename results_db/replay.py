"""Replaying campaign journals into the store: the trials a store outage kept out of it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from results_db.errors import StoreError
from results_db.journal import (
    JournalState,
    decode_trial,
    journal_path,
    journals,
    mark_stored,
    read_journal,
)
from results_db.store import ResultStore


@dataclass
class Replayed:
    """What replaying one journal did."""

    campaign_id: str
    path: Path
    written: int  # trials stored now
    present: int  # trials the store already held (their write had committed)
    status: str | None  # the campaign status set from the journal's end line, if any
    removed: bool  # the journal was deleted: complete and fully stored
    live: bool = False  # left alone: its driver still runs and writes it


def replay_campaign(store: ResultStore, campaign_id: str) -> Replayed | None:
    """Replay a campaign's journal into ``store``; None when it has none."""
    path = journal_path(campaign_id)
    if not path.exists():
        return None
    return replay_journal(store, read_journal(path))


def replay_journal(store: ResultStore, state: JournalState) -> Replayed:
    """Store the journal's trials that lack their ``stored`` line (unless the store holds
    their attempt already), note them stored, and bring a campaign left ``running`` by a
    driver that ended while the store was down to the status the journal gives."""
    campaign = store.get_campaign(state.campaign_id)
    if campaign is None:
        raise StoreError(
            f"campaign {state.campaign_id!r} is not in {store.describe()}; its journal "
            f"{state.path} was written for {state.store}"
        )
    if state.driver_alive():
        return Replayed(state.campaign_id, state.path, 0, 0, None, False, live=True)
    written = present = 0
    done: list[str] = []
    for entry_id, data in state.unstored.items():
        if store.record_trial_once(decode_trial(data)):
            written += 1
        else:
            present += 1
        done.append(entry_id)
    if done:
        mark_stored(state.path, done)
    status = None
    if campaign.status == "running" and state.ended is not None:
        status = state.ended
        store.set_campaign_status(state.campaign_id, status)
    removed = state.ended == "completed"
    if removed:
        state.path.unlink(missing_ok=True)
    return Replayed(state.campaign_id, state.path, written, present, status, removed)


def journals_for(store: ResultStore) -> list[JournalState]:
    """The journals in the state folder written for this store (its masked URL)."""
    states = [read_journal(p) for p in journals()]
    return [s for s in states if s.store == store.describe()]
