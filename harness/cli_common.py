"""What every `harness` command shares: consoles, options, and bad input as exit code 2."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from platformdirs import user_data_path
from rich.console import Console

from harness.campaign import CampaignError
from harness.cluster import ClusterError
from harness.placement import PlacementError
from harness.playbook import PlaybookError
from results_db import QueryError, StoreError, sqlite_url

# Off a terminal rich assumes 80 columns; results tables are wider than that.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(
    stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 200
)
state = {"debug": False}


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


class ListFormat(str, Enum):
    table = "table"
    json = "json"


def default_db_url() -> str:
    """HARNESS_DB_URL, else a SQLite file in the user's data directory."""
    return os.environ.get("HARNESS_DB_URL") or sqlite_url(
        user_data_path("harness") / "results.sqlite"
    )


def db_url(value: str | None) -> str:
    """A --db value: a SQLAlchemy URL, or a plain path meaning a SQLite file."""
    if not value:
        return default_db_url()
    if "://" in value:
        return value
    return sqlite_url(Path(value).expanduser().resolve())


DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db", help="SQLAlchemy URL or SQLite path [env: HARNESS_DB_URL]", show_default=False
    ),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address", envvar="RAY_ADDRESS", help="join this Ray cluster instead of starting one"
    ),
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="show tracebacks")]


class BadOption(ValueError):
    """An option value a command cannot use (beyond what its type already checks)."""


BAD_INPUT = (
    PlaybookError,
    StoreError,
    ClusterError,
    PlacementError,
    CampaignError,
    QueryError,
    BadOption,
)


@contextmanager
def handled(debug: bool = False) -> Iterator[None]:
    """Turn our input errors into lines on stderr and exit code 2."""
    try:
        yield
    except BAD_INPUT as exc:
        if debug or state["debug"]:
            raise
        for line in getattr(exc, "lines", None) or str(exc).splitlines() or [type(exc).__name__]:
            err.print(f"error: {line}", markup=False)
        raise typer.Exit(2) from None
