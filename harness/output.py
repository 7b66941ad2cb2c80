"""Rendering records as rich tables, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.visible import visible
from results_db.vocabulary import DISPLAY_ONLY

FORMATS = ("table", "csv", "json")


def fmt_number(value: Any, digits: int = 4) -> str:
    """Numbers with `digits` significant figures; None as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def fmt_params(params: dict[str, Any]) -> str:
    """``k=v`` pairs of the params that are set (None left out)."""
    return " ".join(f"{k}={v}" for k, v in params.items() if v is not None)


def to_json(records: Sequence[dict[str, Any]]) -> str:
    return json.dumps(list(records), indent=2, default=str)


def to_csv(records: Sequence[dict[str, Any]]) -> str:
    """CSV with one column per key; nested values (params, labels) as JSON text."""
    if not records:
        return ""
    columns = list(dict.fromkeys(k for r in records for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow(
            {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()}
        )
    return buf.getvalue()


def cell(value: Any) -> Text:
    """A table cell: plain text (never rich markup: a stored ``[/bold]`` is just text), with
    control and bidi characters shown as escapes."""
    return Text(visible(fmt_number(value)))


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    t = Table(title=Text(visible(title)), title_justify="left", header_style="bold")
    for c in columns:
        t.add_column(c, overflow="fold")
    for row in rows:
        t.add_row(*[cell(v) for v in row])
    return t


# A results-table column: its header, and the record key it shows or how to compute it.
Column = tuple[str, str | Callable[[dict[str, Any]], Any]]


def records_table(
    title: str, records: Sequence[dict[str, Any]], columns: Sequence[Column]
) -> Table:
    """One row per record, one cell per column spec."""
    rows = [
        [value(r) if callable(value) else r[value] for _header, value in columns] for r in records
    ]
    return table(title, [header for header, _value in columns], rows)


def emit_records(
    console: Console,
    fmt: str,
    title: str,
    records: Sequence[dict[str, Any]],
    columns: Sequence[Column],
) -> None:
    """Records as a table of these columns, or as CSV/JSON of every key."""
    emit(console, fmt, records, records_table(title, records, columns) if fmt == "table" else None)


def emit(console: Console, fmt: str, records: Sequence[dict[str, Any]], tbl: Table | None) -> None:
    """Print records in the chosen format (the table may be None for csv/json)."""
    if fmt in ("json", "csv"):
        records = [{k: v for k, v in r.items() if k not in DISPLAY_ONLY} for r in records]
    if fmt == "json":
        console.file.write(to_json(records) + "\n")
    elif fmt == "csv":
        console.file.write(to_csv(records))
    else:
        console.print(tbl)
