"""The write side of the results store, and opening a database from a URL."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import Engine, create_engine, delete, event, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from results_db import schema
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

TELEMETRY_COLUMNS = "trial_id, source, device, metric, unit, t, value"


class StoreError(Exception):
    """The database cannot be used: bad URL, unreachable, or schema behind. Message is safe."""


def safe_url(url: str | URL) -> str:
    """The URL with any password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def _scrub(message: str, url: URL) -> str:
    """Remove the password from a driver's error message, whatever it quoted."""
    if url.password:
        message = message.replace(str(url.password), "***")
    return message.splitlines()[0] if message else message


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{path}"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the campaign's writer
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def open_engine(url: str) -> Engine:
    """An engine for ``url``, checked by connecting once; StoreError with a safe message."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"invalid database URL {safe_url(url)!r}") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(parsed, pool_pre_ping=True)
    except (NoSuchModuleError, ArgumentError, ImportError) as exc:
        raise StoreError(
            f"cannot use database URL {safe_url(parsed)!r}: {_scrub(str(exc), parsed)}"
        ) from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        with engine.connect():
            pass
    except (OperationalError, SQLAlchemyError) as exc:
        reason = _scrub(str(getattr(exc, "orig", exc)), parsed)
        raise StoreError(f"cannot connect to {safe_url(parsed)}: {reason}") from None
    return engine


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class ResultStore:
    """Writes campaigns, nodes and trials; each trial in one transaction."""

    def __init__(self, url: str, *, upgrade: bool = True) -> None:
        self.url = url
        self.engine = open_engine(url)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self._check_schema(upgrade)

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
            .where(Trial.campaign_id == campaign_id, Trial.status == "ok")
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

    def record_trial(self, rec: TrialRecord) -> int:
        """Write a trial with its metrics, raw samples and telemetry in one transaction."""
        with self._session.begin() as s:
            trial = Trial(
                campaign_id=rec.campaign_id,
                trial_key=rec.trial_key,
                benchmark=rec.benchmark,
                workload=rec.workload,
                params=rec.params,
                params_hash=rec.params_hash,
                node_id=rec.node_id,
                ray_node_id=rec.ray_node_id,
                ranks=rec.ranks,
                attempt=rec.attempt,
                status=rec.status,
                failure_phase=rec.failure_phase,
                failure_reason=rec.failure_reason,
                failure_detail=rec.failure_detail,
                stop_reason=rec.stop_reason,
                warmup_iterations=rec.warmup_iterations,
                iterations=rec.iterations,
                measure_seconds=rec.measure_seconds,
                timer=rec.timer,
                settings=rec.settings,
                context=rec.context,
                window_start=rec.window_start,
                window_end=rec.window_end,
                started_at=rec.started_at,
                finished_at=rec.finished_at,
                workload_version=rec.workload_version,
                primary_metric=rec.primary_metric,
                workload_meta=rec.workload_meta,
            )
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
