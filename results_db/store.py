"""The write side of the results store, and opening a database from a URL."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker

import results_db.schema as schema
from results_db.errors import StoreError as StoreError
from results_db.heartbeat import Heartbeat
from results_db.jsonsafe import strict_json
from results_db.models import (
    Campaign,
    CampaignNode,
    Ceiling,
    EnergyRow,
    IdleBaseline,
    Metric,
    Node,
    RawSample,
    SourceStatusRow,
    TelemetrySample,
    TelemetrySummary,
    Trial,
)
from results_db.records import (
    CampaignRecord,
    IdleBaselineRecord,
    NodeRecord,
    TelemetryRecord,
    TrialRecord,
)
from results_db.urls import remember_secrets, safe_url, scrub, unencoded_at
from results_db.vocabulary import TrialStatus

TELEMETRY_COLUMNS = "trial_id, source, device, metric, unit, t, value"
# A failing trial's text is stored, not its every byte: an exception quoting a huge input
# would otherwise grow the database by that much per attempt.
MAX_FAILURE_REASON_CHARS = 4096
MAX_FAILURE_DETAIL_CHARS = 65536


def clip(text: str | None, limit: int) -> str | None:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    if text is None or len(text) <= limit:
        return text
    keep = max(0, limit - 48)  # room for the note
    return text[:keep] + f"... [{len(text) - keep:,} characters cut]"


SQLITE_BUSY_TIMEOUT_S = 30.0


def _set_wal(cur: Any, budget_s: float = SQLITE_BUSY_TIMEOUT_S) -> None:
    """Put the file in WAL mode (readers never block the campaign's writer).

    WAL is a property of the file, so after the first open this only reads it. The switch
    needs the file to itself and SQLite does not run the busy handler for it: processes
    opening a new database at once got "database is locked" at once. Retry within the
    same budget as busy_timeout instead.
    """
    deadline = time.monotonic() + budget_s
    delay = 0.005
    while True:
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")  # before the rest
    cur.execute("PRAGMA foreign_keys=ON")
    _set_wal(cur)
    cur.close()


def _first_line(message: str) -> str:
    lines = scrub(message).strip().splitlines()
    return lines[0] if lines else ""


def is_outage(exc: BaseException) -> bool:
    """Whether a failed write means the store is unavailable for now (server down or
    restarting, connection cut, disk full, file locked), so the same write may succeed later,
    rather than that the write itself is wrong."""
    if isinstance(exc, (OperationalError, InterfaceError, DisconnectionError)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sqlite3.OperationalError):  # raised by the raw bulk insert
        return True
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))


def failure_line(exc: BaseException) -> str:
    """A store failure's reason in one line, secrets masked."""
    line = _first_line(str(getattr(exc, "orig", None) or exc))
    return line or type(exc).__name__


# Connecting to a server that does not answer (a cut link, not a refused port) must fail in
# bounded time: the campaign retries on its own schedule.
PG_CONNECT_TIMEOUT_S = 10


def open_engine(url: str, *, must_exist: bool = False) -> Engine:
    """An engine for ``url``, checked by connecting once; StoreError with a safe message.

    A SQLite file's folder is created unless ``must_exist`` (read-only commands), where a
    missing file is an error naming it instead.
    """
    remember_secrets(url)
    if unencoded_at(url):
        raise StoreError(
            f"database URL {safe_url(url)!r}: the user or password holds an '@'; "
            "percent-encode it as %40"
        )
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"invalid database URL {safe_url(url)!r}") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database).expanduser()
        if must_exist and not path.exists():
            raise StoreError(f"no database at {path}: give --db, or run a campaign first")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the folder of database {path}: {exc.strerror or exc}"
            ) from None
        if path.exists() and not path.is_file():
            raise StoreError(f"database {path} is not a regular file")
    connect_args = (
        {"connect_timeout": PG_CONNECT_TIMEOUT_S}
        if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query
        else {}
    )
    try:
        engine = create_engine(
            parsed, pool_pre_ping=True, json_serializer=strict_json, connect_args=connect_args
        )
    except (NoSuchModuleError, ArgumentError, ImportError) as exc:
        raise StoreError(
            f"cannot use database URL {safe_url(url)!r}: {_first_line(str(exc))}"
        ) from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        with engine.connect():
            pass
    except (OperationalError, SQLAlchemyError) as exc:
        reason = _first_line(str(getattr(exc, "orig", exc)))
        raise StoreError(f"cannot connect to {safe_url(url)}: {reason}") from None
    return engine


@dataclass(frozen=True)
class FailedTrial:
    """A stored trial attempt that did not succeed: where it ran and why."""

    key: str
    benchmark: str
    hostname: str
    ray_node_id: str
    status: str
    reason: str


# The record's fields that are the trial row's own columns (the rest are child rows):
# one definition, the Trial model, decides what is copied.
_TRIAL_COLUMNS = frozenset(c.key for c in Trial.__table__.columns) - {"id"}
_RECORD_COLUMNS = tuple(f.name for f in fields(TrialRecord) if f.name in _TRIAL_COLUMNS)
_CLIPPED = {
    "failure_reason": MAX_FAILURE_REASON_CHARS,
    "failure_detail": MAX_FAILURE_DETAIL_CHARS,
}


def trial_columns(rec: TrialRecord) -> dict[str, Any]:
    """The trial row's column values from its record, failure text bounded."""
    values = {name: getattr(rec, name) for name in _RECORD_COLUMNS}
    for name, limit in _CLIPPED.items():
        values[name] = clip(values[name], limit)
    return values


def upgrade_schema(url: str) -> tuple[str | None, str]:
    """Migrate the database at ``url`` to this code's schema: (revision before, after)."""
    engine = open_engine(url)
    try:
        before = schema.current_revision(engine)
        schema.upgrade(engine)
        return before, schema.head_revision()
    except SQLAlchemyError as exc:  # not a database, a full disk, no permission
        reason = _first_line(str(getattr(exc, "orig", exc)))
        raise StoreError(f"cannot upgrade {safe_url(url)}: {reason}") from None
    finally:
        engine.dispose()


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class ResultStore:
    """Writes campaigns, nodes and trials; each trial in one transaction."""

    def __init__(self, url: str, *, upgrade: bool = True) -> None:
        self.url = url
        self.engine = open_engine(url, must_exist=not upgrade)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        try:
            self._check_schema(upgrade)
        except SQLAlchemyError as exc:  # not a database, a full disk, no permission
            reason = _first_line(str(getattr(exc, "orig", exc)))
            raise StoreError(f"cannot use {safe_url(url)}: {reason}") from None

    def _check_schema(self, upgrade: bool) -> None:
        current, head = schema.current_revision(self.engine), schema.head_revision()
        if current == head:
            return
        if current is None and upgrade:
            schema.upgrade(self.engine)  # a new database: create it
            return
        where = safe_url(self.url)
        if current is None:
            raise StoreError(f"{where} has no harness schema: run `harness db upgrade`")
        raise StoreError(
            f"{where} is at schema {current}, this harness needs {head}: "
            "run `harness db upgrade --db URL`"
        )

    def session(self) -> Session:
        return self._session()

    def describe(self) -> str:
        return safe_url(self.url)

    # campaigns -----------------------------------------------------------------------------
    def start_campaign(self, rec: CampaignRecord) -> None:
        with self._session.begin() as s:
            s.add(Campaign(**asdict(rec), status="running"))

    def get_campaign(self, campaign_id: str) -> Campaign | None:
        with self.session() as s:
            return s.get(Campaign, campaign_id)

    def heartbeat(self, campaign_id: str) -> Heartbeat:
        """A context manager that keeps the campaign's ``heartbeat_at`` fresh while open."""
        return Heartbeat(self._session, campaign_id)

    def set_campaign_status(self, campaign_id: str, status: str) -> None:
        with self._session.begin() as s:
            finished = None if status == "running" else utcnow()
            s.execute(
                update(Campaign)
                .where(Campaign.id == campaign_id)
                .values(status=status, finished_at=finished)
            )

    # nodes ---------------------------------------------------------------------------------
    def upsert_node(self, rec: NodeRecord) -> int:
        """The id of the node row with this fingerprint, creating it when new.

        Campaigns writing to one database at once may meet the same node: the insert ignores
        a conflict on the fingerprint, so neither fails and both get the one row.
        """
        now = utcnow()
        values = {**asdict(rec), "first_seen": now, "last_seen": now}
        with self._session.begin() as s:
            dialect = self.engine.dialect.name
            if dialect in ("postgresql", "sqlite"):
                ins = (pg_insert if dialect == "postgresql" else sqlite_insert)(Node)
                s.execute(
                    ins.values(**values).on_conflict_do_nothing(index_elements=["fingerprint"])
                )
            elif s.scalar(select(Node.id).where(Node.fingerprint == rec.fingerprint)) is None:
                s.add(Node(**values))
                s.flush()
            node = s.scalars(select(Node).where(Node.fingerprint == rec.fingerprint)).one()
            node.last_seen = now
            return node.id

    def link_node(
        self, campaign_id: str, ray_node_id: str, node_id: int, labels: dict, resources: dict
    ) -> None:
        """Record how the cluster presented a node to a campaign (idempotent on resume)."""
        with self._session.begin() as s:
            row = s.get(CampaignNode, (campaign_id, ray_node_id))
            if row is None:
                s.add(
                    CampaignNode(
                        campaign_id=campaign_id,
                        ray_node_id=ray_node_id,
                        node_id=node_id,
                        labels=labels,
                        resources=resources,
                    )
                )

    def set_node_clock(
        self, campaign_id: str, ray_node_id: str, when: str, offset_s: float, rtt_s: float
    ) -> None:
        """Store a node's clock offset to the driver, read at the campaign's ``when``."""
        with self._session.begin() as s:
            row = s.get(CampaignNode, (campaign_id, ray_node_id))
            if row is not None:
                row.clock = {**(row.clock or {}), when: {"offset_s": offset_s, "rtt_s": rtt_s}}

    def _insert_telemetry(self, s: Session, trial_id: int, rows: list[TelemetryRecord]) -> None:
        """Telemetry rows in bulk, in the trial's transaction: COPY on PostgreSQL, the
        driver's executemany of tuples on SQLite (SQLAlchemy's per-row dicts cost 2-3x)."""
        dialect = self.engine.dialect.name
        tuples = ((trial_id, r.source, r.device, r.metric, r.unit, r.t, r.value) for r in rows)
        if dialect == "postgresql":
            raw = s.connection().connection.driver_connection
            with (
                raw.cursor() as cur,
                cur.copy(f"COPY telemetry_samples ({TELEMETRY_COLUMNS}) FROM STDIN") as copy,
            ):
                for row in tuples:
                    copy.write_row(row)
        elif dialect == "sqlite":
            raw = s.connection().connection.driver_connection
            raw.executemany(
                f"INSERT INTO telemetry_samples ({TELEMETRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                tuples,
            )
        else:
            s.execute(insert(TelemetrySample), [{"trial_id": trial_id, **asdict(r)} for r in rows])

    def record_idle_baselines(self, rows: list[IdleBaselineRecord]) -> None:
        """Store the idle power measured on nodes before a campaign's trials."""
        if rows:
            with self._session.begin() as s:
                s.execute(insert(IdleBaseline), [asdict(r) for r in rows])

    def update_ceilings(self, campaign_id: str) -> list[Ceiling]:
        """Store the campaign's best median per (hardware class, peak key) as ceilings."""
        q = (
            select(Trial, Node.hardware_class, Metric)
            .join(Node, Node.id == Trial.node_id)
            .join(Metric, Metric.trial_id == Trial.id)
            .where(Trial.campaign_id == campaign_id, Trial.status == TrialStatus.OK.value)
        )
        best: dict[tuple[str, str], tuple[float, str, int]] = {}
        with self._session.begin() as s:
            for trial, hw_class, metric in s.execute(q):
                key = metric.ceiling
                if key is None or metric.median is None:
                    continue
                if metric.median > best.get((hw_class, key), (float("-inf"),))[0]:
                    best[(hw_class, key)] = (metric.median, metric.unit, trial.id)
            s.execute(delete(Ceiling).where(Ceiling.campaign_id == campaign_id))
            rows = [
                Ceiling(
                    campaign_id=campaign_id,
                    hardware_class=hw,
                    key=key,
                    value=v,
                    unit=u,
                    trial_id=tid,
                    measured_at=utcnow(),
                )
                for (hw, key), (v, u, tid) in sorted(best.items())
            ]
            s.add_all(rows)
        return rows

    # trials --------------------------------------------------------------------------------
    def attempts(self, campaign_id: str) -> dict[str, tuple[int, str]]:
        """For each trial key of the campaign: (latest attempt number, its status)."""
        latest = (
            select(Trial.trial_key, func.max(Trial.attempt).label("attempt"))
            .where(Trial.campaign_id == campaign_id)
            .group_by(Trial.trial_key)
            .subquery()
        )
        q = select(Trial.trial_key, Trial.attempt, Trial.status).join(
            latest,
            (Trial.trial_key == latest.c.trial_key) & (Trial.attempt == latest.c.attempt),
        )
        with self.session() as s:
            return {
                k: (a, st)
                for k, a, st in s.execute(q.where(Trial.campaign_id == campaign_id)).all()
            }

    def latest_failures(self, campaign_id: str, keys: set[str]) -> list[FailedTrial]:
        """The latest attempt of each of these trial keys, with where it ran and why it
        failed."""
        if not keys:
            return []
        latest = (
            select(Trial.trial_key, func.max(Trial.attempt).label("attempt"))
            .where(Trial.campaign_id == campaign_id, Trial.trial_key.in_(keys))
            .group_by(Trial.trial_key)
            .subquery()
        )
        q = (
            select(Trial, Node.hostname)
            .join(
                latest,
                (Trial.trial_key == latest.c.trial_key) & (Trial.attempt == latest.c.attempt),
            )
            .outerjoin(Node, Node.id == Trial.node_id)
            .where(Trial.campaign_id == campaign_id)
            .order_by(Trial.id)
        )
        with self.session() as s:
            return [
                FailedTrial(
                    t.trial_key,
                    t.benchmark,
                    host or "?",
                    t.ray_node_id or "",
                    t.status,
                    t.failure_reason or "",
                )
                for t, host in s.execute(q)
            ]

    def has_trial(self, campaign_id: str, trial_key: str, attempt: int) -> bool:
        """Whether this attempt of a trial is stored (a write whose commit was not confirmed,
        or a journal replayed twice, must not store it again)."""
        with self.session() as s:
            q = select(Trial.id).where(
                Trial.campaign_id == campaign_id,
                Trial.trial_key == trial_key,
                Trial.attempt == attempt,
            )
            return s.scalar(q) is not None

    def record_trial_once(self, rec: TrialRecord) -> bool:
        """Write a trial unless its attempt is already stored; whether it was written."""
        if self.has_trial(rec.campaign_id, rec.trial_key, rec.attempt):
            return False
        self.record_trial(rec)
        return True

    def record_trial(self, rec: TrialRecord) -> int:
        """Write a trial with its metrics, raw samples and telemetry in one transaction."""
        with self._session.begin() as s:
            trial = Trial(**trial_columns(rec))
            s.add(trial)
            s.flush()
            for m in rec.metrics:
                row = Metric(
                    trial_id=trial.id,
                    name=m.name,
                    unit=m.unit,
                    higher_is_better=m.higher_is_better,
                    ceiling=m.ceiling,
                    **m.summary,
                )
                s.add(row)
                s.flush()
                if m.samples:
                    s.execute(
                        insert(RawSample),
                        [
                            {"metric_id": row.id, "idx": i, "value": v}
                            for i, v in enumerate(m.samples)
                        ],
                    )
            if rec.telemetry:
                self._insert_telemetry(s, trial.id, rec.telemetry)
            if rec.telemetry_summary:
                s.execute(
                    insert(TelemetrySummary),
                    [{"trial_id": trial.id, **asdict(t)} for t in rec.telemetry_summary],
                )
            if rec.energy:
                s.execute(
                    insert(EnergyRow), [{"trial_id": trial.id, **asdict(e)} for e in rec.energy]
                )
            for source, ok, reason in rec.sources:
                s.add(
                    SourceStatusRow(trial_id=trial.id, source=source, available=ok, reason=reason)
                )
            return trial.id
