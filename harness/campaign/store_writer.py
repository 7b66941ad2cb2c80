"""Writing a campaign's records so that a store outage loses nothing measured.

Each trial record goes to the campaign's local journal (fsynced) first, then to the store.
A write that fails because the store is unavailable (server restarting or down, connection
cut, disk full) is kept and retried with backoff while the campaign goes on: trials keep
running and their records queue behind it, in order. Only when the store has failed for
longer than the retry window does the campaign stop, with every measured trial in the
journal for `--resume` or `harness db replay` to store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from harness.errors import StoreOutageError
from results_db.journal import DEFAULT_STORE_RETRY_S as DEFAULT_STORE_RETRY_S
from results_db.journal import Journal
from results_db.records import TrialRecord
from results_db.store import ResultStore, failure_line, is_outage

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0

T = TypeVar("T")


@dataclass
class _Pending:
    entry_id: str
    record: TrialRecord
    tried: bool = False  # a failed write may have committed unseen: check before writing again


class StoreWriter:
    """A campaign's writes: trial records through the journal, retried across outages."""

    def __init__(
        self,
        store: ResultStore,
        campaign_id: str,
        retry_s: float,
        warn: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.campaign_id = campaign_id
        self.retry_s = retry_s
        self._warn = warn
        self._clock = clock
        self._sleep = sleep
        self.journal = Journal(campaign_id, store.describe())
        self.pending: list[_Pending] = []
        self._outage_since: float | None = None
        self._next_try = 0.0
        self._delay = FIRST_BACKOFF_S
        self._reason = ""

    # trials --------------------------------------------------------------------------------
    def add(self, record: TrialRecord) -> None:
        """Journal a trial's record, then store it (and any before it still waiting) unless
        the store is in an outage and not yet due for another try."""
        self.pending.append(_Pending(self.journal.add_trial(record), record))
        self._drain(wait=False)

    def flush(self) -> None:
        """Store every waiting record, retrying within the window (StoreOutageError after)."""
        self._drain(wait=True)

    def _drain(self, *, wait: bool) -> None:
        while self.pending:
            if not self._due(wait):
                return
            item = self.pending[0]
            try:
                if item.tried:
                    self.store.record_trial_once(item.record)
                else:
                    self.store.record_trial(item.record)
            except Exception as exc:
                if not is_outage(exc):
                    raise
                item.tried = True
                self._failed(exc)
                continue
            self.journal.stored(item.entry_id)
            self.pending.pop(0)
            self._recovered()

    # any other write -----------------------------------------------------------------------
    def call(self, what: str, write: Callable[[], T]) -> T:
        """Run a store write (a status, the ceilings), retried within the window like a
        trial's; StoreOutageError when the window passes."""
        while True:
            self._due(wait=True)
            try:
                value = write()
            except Exception as exc:
                if not is_outage(exc):
                    raise
                self._failed(exc, what)
                continue
            self._recovered()
            return value

    def try_once(self, write: Callable[[], object]) -> bool:
        """One attempt at a write on the way out (marking the campaign interrupted): a store
        that is down must not hold the exit; the journal says the same."""
        try:
            write()
        except Exception as exc:
            if not is_outage(exc):
                raise
            return False
        return True

    # the outage ----------------------------------------------------------------------------
    def _due(self, wait: bool) -> bool:
        """Whether the next try may go now; with ``wait``, sleep until it may."""
        if self._outage_since is None:
            return True
        now = self._clock()
        if now >= self._next_try:
            return True
        if not wait:
            return False
        self._sleep(self._next_try - now)
        return True

    def _failed(self, exc: BaseException, what: str = "") -> None:
        now = self._clock()
        self._reason = failure_line(exc)
        if self._outage_since is None:
            self._outage_since = now
            self._delay = FIRST_BACKOFF_S
            self._warn(
                f"store {self.store.describe()} failed{' writing ' + what if what else ''}: "
                f"{self._reason}; measured trials are kept in {self.journal.path} and the "
                f"write retried for up to {self.retry_s:g} s"
            )
        elapsed = now - self._outage_since
        if elapsed >= self.retry_s:
            raise StoreOutageError(
                f"the store {self.store.describe()} has failed for {elapsed:.0f} s "
                f"({self._reason}); {len(self.pending)} measured trial(s) not yet stored are "
                f"kept in {self.journal.path}",
                self.campaign_id,
            )
        self._next_try = now + min(self._delay, self._outage_since + self.retry_s - now)
        self._delay = min(self._delay * 2, MAX_BACKOFF_S)

    def _recovered(self) -> None:
        if self._outage_since is None:
            return
        down = self._clock() - self._outage_since
        self._outage_since = None
        self._warn(
            f"store {self.store.describe()} is back after {down:.0f} s; "
            f"{len(self.pending)} trial(s) still to write"
        )

    def close(self, status: str) -> None:
        """Note the campaign's end in the journal; remove the journal when the campaign is
        complete and every trial in it stored."""
        self.journal.end(status)
        self.journal.close(remove=status == "completed" and not self.pending)
