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

from harness.errors import CampaignError, ClusterError, PlacementError, PreflightError
from harness.playbook.limits import LimitError
from harness.playbook.load import PlaybookError
from harness.present.visible import visible
from results_db import QueryError, StoreError, safe_url, sqlite_url
from results_db.urls import scrub

# Off a terminal rich assumes 80 columns; results tables are wider than that. Markup is off:
# text from trials and playbooks is printed as it is (styled output builds rich Text).
out = Console(
    highlight=False, markup=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200
)
err = Console(
    stderr=True,
    highlight=False,
    markup=False,
    soft_wrap=True,
    width=None if sys.stderr.isatty() else 200,
)
state = {"debug": False}


WideOpt = Annotated[
    bool,
    typer.Option("--wide", help="every column and parameter, wider than the terminal if need be"),
]


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
    if ":" in value:  # a URL missing its scheme, or a typo: never a file named '::::'
        raise BadOption(
            f"--db {safe_url(value)!r}: expected a database URL (DIALECT://...) "
            "or a SQLite file path without ':'"
        )
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
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="override a playbook field: KEY.PATH=VALUE (repeatable)"),
]
RunArgOpt = Annotated[
    list[str] | None,
    typer.Option("--run-arg", help="one more `harness run` argument (repeatable)"),
]


def run_args(sets: list[str] | None, more: list[str] | None) -> list[str]:
    """The `harness run` arguments a launcher hands on: each --set, then --run-arg's."""
    return [a for s in sets or [] for a in ("--set", s)] + list(more or [])


MaxBytesOpt = Annotated[
    int | None,
    typer.Option(
        "--max-playbook-bytes",
        min=1,
        help="read at most this much playbook [default: 1 MiB; env: HARNESS_MAX_PLAYBOOK_BYTES]",
        show_default=False,
    ),
]
MaxTrialsOpt = Annotated[
    int | None,
    typer.Option(
        "--max-trials",
        min=1,
        help="refuse plans of more trials [default: 100,000; env: HARNESS_MAX_TRIALS]",
        show_default=False,
    ),
]

MaxTokensOpt = Annotated[
    int | None,
    typer.Option(
        "--max-request-tokens",
        min=1,
        help="refuse serving requests longer than this many tokens "
        "[default: 1,048,576; env: HARNESS_MAX_REQUEST_TOKENS]",
        show_default=False,
    ),
]


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
    LimitError,
    PreflightError,
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
            err.print(f"error: {visible(scrub(str(line)))}", markup=False)
        raise typer.Exit(2) from None
