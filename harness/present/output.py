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

from harness.present.visible import visible
from results_db.jsonsafe import finite
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
    """``k=v`` pairs of the params that are set (None left out); a mapping as
    ``{a:1,b:x}`` (its unset entries left out), not Python's repr."""
    return " ".join(f"{k}={_compact(v)}" for k, v in params.items() if v is not None)


def _compact(value: Any) -> str:
    if isinstance(value, dict):
        inner = ",".join(f"{k}:{_compact(v)}" for k, v in value.items() if v is not None)
        return "{" + inner + "}"
    return str(value)


def to_json(records: Sequence[dict[str, Any]]) -> str:
    # Strict JSON: a non-finite figure is null (bare Infinity is not JSON; jq refuses it).
    return json.dumps(finite(list(records)), indent=2, default=str, allow_nan=False)


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


# No column is squeezed below its longest word, up to this many characters, so words wrap
# whole ("bandwid|th" was seen at 100 columns); longer ones (paths, ids) may be folded.
MAX_UNBROKEN = 16


def _longest_word(values: Sequence[str]) -> int:
    return max((len(w) for v in values for w in v.split()), default=0)


def _longest_line(values: Sequence[str]) -> int:
    return max((len(line) for v in values for line in v.splitlines() or [""]), default=0)


# Headers of columns that hold lists of short items (k=v pairs, "n=44 cv=9.2% ..."): they
# fold first when a terminal is too narrow for every column's longest word.
FOLD_FIRST = frozenset({"params", "detail", "description", "reason", "labels"})


# Columns that, holding one value in every row, are said once in the title instead.
HOIST = frozenset({"campaign", "workload", "benchmark", "node", "status", "unit", "metric"})


class FittedTable(Table):
    """A table that knows, per column, its natural width and its longest word (up to
    MAX_UNBROKEN), so ``fit`` can give the room to the columns that need it."""

    sizes: list[tuple[int, int]]
    yielding: list[int]  # the columns that fold first: long lists of short items

    def fit(self, width: int) -> None:
        """Set column widths for a console ``width`` columns wide: every column at least its
        longest word where they all fit (the widest give way first where they do not),
        the rest of the room to the columns whose text is longer than that."""
        budget = width - (3 * len(self.columns) + 1)  # borders, one space of padding a side
        if sum(natural for natural, _ in self.sizes) <= budget:
            return  # everything fits on one line per row: rich's own layout
        widths = [max(1, word) for _, word in self.sizes]
        # Parameter lists and details fold first (down to a few characters); then the
        # widest column gives way, one character at a time.
        for floor, candidates in ((8, self.yielding), (1, range(len(widths)))):
            while sum(widths) > budget:
                i = max(candidates, key=lambda j: widths[j], default=None)
                if i is None or widths[i] <= floor:
                    break
                widths[i] -= 1
        room = budget - sum(widths)
        while room > 0:
            short = [
                (n - w, i) for i, ((n, _), w) in enumerate(zip(self.sizes, widths, strict=True))
            ]
            deficit, i = max(short)
            if deficit <= 0:
                break
            widths[i] += 1
            room -= 1
        for column, w in zip(self.columns, widths, strict=True):
            column.width = w


def table(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, wide: bool = False
) -> FittedTable:
    """A table of plain-text cells. Unless ``wide``, columns empty in every row are left
    out, and those of HOIST holding one value in every row are named once in the title;
    ``emit`` fits it to the terminal so words wrap whole wherever the room allows."""
    cells = [[cell(v) for v in row] for row in rows]
    keep = [
        i
        for i in range(len(columns))
        if wide or not cells or any(row[i].plain.strip() for row in cells)
    ]
    if not wide and len(cells) > 1:  # a column with one value for every row goes in the title
        same = [
            i for i in keep if columns[i] in HOIST and len({row[i].plain for row in cells}) == 1
        ]
        keep = [i for i in keep if i not in same]
        title = "; ".join([title, *(f"{columns[i]} {cells[0][i].plain}" for i in same)])
    t = FittedTable(title=Text(visible(title)), title_justify="left", header_style="bold")
    t.sizes, t.yielding = [], []
    for i in keep:
        if columns[i] in FOLD_FIRST:
            t.yielding.append(len(t.sizes))
        texts = [columns[i], *(row[i].plain for row in cells)]
        t.sizes.append((_longest_line(texts), min(_longest_word(texts), MAX_UNBROKEN)))
        t.add_column(columns[i], overflow="fold", no_wrap=wide)
    for row in cells:
        t.add_row(*[row[i] for i in keep])
    return t


# A results-table column: its header, and the record key it shows or how to compute it.
Column = tuple[str, str | Callable[[dict[str, Any]], Any]]

# What a column shows instead under --wide: every parameter, defaults included.
WIDE_VALUES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "params": lambda r: fmt_params(r["params"]),
}


def records_table(
    title: str, records: Sequence[dict[str, Any]], columns: Sequence[Column], *, wide: bool = False
) -> Table:
    """One row per record, one cell per column spec."""
    if wide:
        columns = [(h, WIDE_VALUES.get(h, v)) for h, v in columns]
    rows = [
        [value(r) if callable(value) else r[value] for _header, value in columns] for r in records
    ]
    return table(title, [header for header, _value in columns], rows, wide=wide)


def emit_records(
    console: Console,
    fmt: str,
    title: str,
    records: Sequence[dict[str, Any]],
    columns: Sequence[Column],
    *,
    wide: bool = False,
) -> None:
    """Records as a table of these columns, or as CSV/JSON of every key."""
    tbl = records_table(title, records, columns, wide=wide) if fmt == "table" else None
    emit(console, fmt, records, tbl, wide=wide)


def emit(
    console: Console,
    fmt: str,
    records: Sequence[dict[str, Any]],
    tbl: Table | None,
    *,
    wide: bool = False,
) -> None:
    """Print records in the chosen format (the table may be None for csv/json). A wide table
    is printed at its natural width, wider than the terminal if need be."""
    if fmt in ("json", "csv"):
        records = [{k: v for k, v in r.items() if k not in DISPLAY_ONLY} for r in records]
    if fmt == "json":
        console.file.write(to_json(records) + "\n")
    elif fmt == "csv":
        console.file.write(to_csv(records))
    elif tbl is None:
        return
    elif wide:
        # rich caps a print at the console's width: widen the console for this one table.
        natural = console.measure(tbl, options=console.options.update_width(10**5)).maximum
        width = console.width
        console.width = max(width, natural)
        try:
            console.print(tbl, crop=False)
        finally:
            console.width = width
    else:
        if isinstance(tbl, FittedTable):
            tbl.fit(console.width)
        console.print(tbl)
