"""Schema versions through Alembic: upgrade, and tell when a database is behind."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic is imported only to migrate: reading a store checks its revision with one SELECT
# and the head from the migration files, so `harness results ...` starts without it.
MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"  # Alembic's default


def alembic_config() -> Config:
    """An Alembic config pointing at this package's migrations (no ini file needed)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


_ASSIGNED = re.compile(r"^(revision|down_revision)\s*=\s*[\"']([^\"']+)[\"']", re.M)


@cache
def head_revision() -> str:
    """The newest migration this code knows: the one no other migration builds on (read
    from the files' ``revision``/``down_revision`` lines; a test holds it to Alembic's)."""
    revisions, parents = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = dict(_ASSIGNED.findall(path.read_text()))
        if "revision" in found:
            revisions.add(found["revision"])
            if "down_revision" in found:
                parents.add(found["down_revision"])
    heads = revisions - parents
    if len(heads) != 1:
        raise RuntimeError(f"migrations must form one line; heads: {sorted(heads)}")
    return heads.pop()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


# Any constant both processes agree on: the key of PostgreSQL's advisory lock.
MIGRATION_LOCK_KEY = 0x6861726E  # "harn"


def _sqlite_immediate(engine: Engine) -> Engine:
    """An engine on the same SQLite file whose transactions start with BEGIN IMMEDIATE.

    pysqlite runs DDL outside any transaction unless told otherwise, so two processes
    creating a new database both ran CREATE TABLE and one failed. An IMMEDIATE transaction
    takes the write lock first; the other waits (busy_timeout), then finds the schema done.
    """
    locked = create_engine(engine.url)

    @event.listens_for(locked, "connect")
    def _connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        dbapi_conn.execute("PRAGMA busy_timeout=60000")

    @event.listens_for(locked, "begin")
    def _begin(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return locked


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` in one transaction, holding a lock so concurrent
    upgrades (two first campaigns on a new database, two `db upgrade`) run one after the
    other: the second finds the schema current and does nothing."""
    from alembic import command

    cfg = alembic_config()
    sqlite = engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:")
    target = _sqlite_immediate(engine) if sqlite else engine
    try:
        with target.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        if sqlite:
            target.dispose()
