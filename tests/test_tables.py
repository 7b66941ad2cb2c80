"""Result tables fit a 100-column terminal without breaking words; --wide shows everything;
co-located nodes are told apart; parameters at their default are counted, never hidden."""

from __future__ import annotations

import io
import re

from rich.console import Console

from harness.present.output import emit, records_table, table
from harness.present.summary import shown_params
from results_db.query import add_node_labels

# Words that must stay whole at 100 columns (params and details fold first when the
# minimum widths do not fit: the widest columns give way first).
WORDS = ("bandwidth", "throughput", "kernels-host", "stream-host", "TFLOP", "benchmark")


def render(tbl, width: int = 100, wide: bool = False) -> str:
    buf = io.StringIO()
    console = Console(file=buf, width=width, highlight=False, markup=False)
    emit(console, "table", [], tbl, wide=wide)
    return buf.getvalue()


def rows() -> list[list[str]]:
    """What `results show` printed for the smoke campaign (at 100 columns its words broke)."""
    params = "heads=8 kv_heads=2 seq_len=256 head_dim=64 causal=False (+3 defaults)"
    return [
        [
            str(i),
            "kernels-host",
            params,
            "gpu07",
            "ok",
            "throughput",
            "0.5889 TFLOP/s",
            "[0.5872, 0.5902]",
            "",
            "",
            "n=1171 cv=15.5% min_reached",
        ]
        for i in range(3)
    ] + [
        [
            "4",
            "stream-host",
            "op=triad",
            "gpu08",
            "ok",
            "bandwidth",
            "29.77 GB/s",
            "[27.54, 30.66]",
            "",
            "",
            "n=44 cv=9.2% min_reached",
        ]
    ]


HEADERS = [
    "trial",
    "benchmark",
    "params",
    "node",
    "status",
    "metric",
    "median",
    "95% CI",
    "of peak",
    "efficiency",
    "detail",
]


def test_a_wide_table_fits_100_columns_with_every_word_whole() -> None:
    text = render(table("campaign c", HEADERS, rows()))
    assert max(len(line) for line in text.splitlines()) <= 100
    cells = re.findall(r"[\w.\-]+", text)
    for word in WORDS:  # a word broken across lines would show as two pieces, not itself
        assert word in cells, word
    assert "of peak" not in text and "efficiency" not in text  # empty in every row: dropped


def test_wide_keeps_every_column_on_one_line_each() -> None:
    text = render(table("campaign c", HEADERS, rows(), wide=True), wide=True)
    lines = text.splitlines()
    assert max(len(line) for line in lines) > 100
    assert "of peak" in text and "efficiency" in text
    assert sum("kernels-host" in line for line in lines) == 3  # one line per row
    assert "causal=False (+3 defaults)" in text


def test_wide_params_show_defaults_too() -> None:
    rec = {
        "params": {"op": "triad", "size_mib": 64.0, "device": "cpu"},
        "param_defaults": {"size_mib": 64.0, "device": "cpu", "op": "triad"},
    }
    columns = [("params", lambda r: shown_params(r["params"], r["param_defaults"]))]
    narrow = render(records_table("t", [rec], columns))
    wide = render(records_table("t", [rec], columns, wide=True), wide=True)
    assert "(+3 defaults)" in narrow and "size_mib" not in narrow
    assert "op=triad size_mib=64.0 device=cpu" in wide


def test_shown_params_count_what_they_leave_out() -> None:
    defaults = {"op": "triad", "size_mib": 64.0, "device": "cpu"}
    assert shown_params({"op": "copy", "size_mib": 64.0, "device": "cpu"}, defaults) == (
        "op=copy (+2 defaults)"
    )
    assert shown_params({"op": "copy", "size_mib": 8.0, "device": "cpu"}, defaults) == (
        "op=copy size_mib=8.0 (+1 default)"
    )
    assert shown_params({"op": "copy"}, None) == "op=copy"
    varying = shown_params({"op": "triad", "size_mib": 64.0, "device": "cpu"}, defaults, {"op"})
    assert varying == "op=triad (+2 defaults)"


def test_nodes_sharing_a_host_are_told_apart_and_ranks_all_named() -> None:
    a, b, c = "a48ead27" + "0" * 48, "b12c0a77" + "0" * 48, "c0ffee00" + "0" * 48
    records = [
        {"node": "vm", "node_id": a, "ranks": None},
        {"node": "vm", "node_id": b, "ranks": None},
        {"node": "gpu07", "node_id": c, "ranks": None},
        {
            "node": "vm",
            "node_id": a,
            "ranks": [
                {"rank": 0, "ray_node_id": a, "hostname": "vm"},
                {"rank": 1, "ray_node_id": c, "hostname": "gpu07"},
            ],
        },
    ]
    add_node_labels(records)
    assert [r["node_label"] for r in records] == [
        "vm (a48ead27)",
        "vm (b12c0a77)",
        "gpu07",
        "vm (a48ead27), gpu07",
    ]
