"""The store as a whole: `harness report` (one HTML file) and `harness db upgrade`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import results_db as db_api  # SQLAlchemy loads on first use, not for --help
from harness.cli.common import DbOpt, db_url, handled, out
from harness.errors import CampaignError
from results_db.errors import QueryError
from results_db.urls import safe_url


def report(
    campaign: Annotated[str, typer.Argument(help="campaign id")],
    output: Annotated[Path, typer.Option("-o", "--output", help="HTML file to write")] = Path(
        "report.html"
    ),
    compare: Annotated[str | None, typer.Option("--compare", help="another campaign id")] = None,
    db: DbOpt = None,
) -> None:
    """Write one self-contained HTML report (works offline) of a campaign."""
    from harness.present.report import render
    from results_db.report_data import campaign_data

    with handled():
        store = db_api.ResultStore(db_url(db), upgrade=False)
        with store.session() as s:
            data = campaign_data(s, campaign)
            other = campaign_data(s, compare) if compare else None
        for cid, found in ((campaign, data), (compare, other)):
            if cid and found is None:
                raise CampaignError(f"no campaign {cid!r} in {store.describe()}")
        try:
            output.write_text(render(data, other))
        except OSError as exc:
            raise QueryError(f"cannot write {output}: {exc.strerror or exc}") from None
    out.print(f"report of {campaign} -> {output}", markup=False)


def db_replay(
    campaigns: Annotated[
        list[str] | None,
        typer.Argument(help="campaign ids (default: every journal written for this store)"),
    ] = None,
    db: DbOpt = None,
) -> None:
    """Store the trials that a store outage kept in local campaign journals."""
    from results_db.journal import journal_path, read_journal
    from results_db.replay import journals_for, replay_journal

    with handled():
        store = db_api.ResultStore(db_url(db), upgrade=False)
        if campaigns:
            states = []
            for cid in campaigns:
                path = journal_path(cid)
                if not path.exists():
                    raise CampaignError(f"no journal for campaign {cid!r} (looked for {path})")
                states.append(read_journal(path))
        else:
            states = journals_for(store)
        replayed = [replay_journal(store, s) for s in states]
    if not replayed:
        out.print(f"no campaign journal for {store.describe()}", markup=False)
    for r in replayed:
        if r.live:
            line = "left alone: its driver is still running"
        else:
            line = f"{r.written} trial(s) stored, {r.present} already there"
            line += f"; marked {r.status}" if r.status else ""
            line += "; journal removed" if r.removed else ""
        out.print(f"{r.campaign_id}: {line}", markup=False)


def db_upgrade(db: DbOpt = None) -> None:
    """Apply the schema migrations to the database."""
    from results_db.store import upgrade_schema

    with handled():
        url = db_url(db)
        before, after = upgrade_schema(url)
    out.print(f"{safe_url(url)}: schema {before or '(empty)'} -> {after}", markup=False)
