"""The report's charts, drawn by matplotlib as inline SVG: grouped bars with 95% CI error
bars, sweeps (log x) with error bars, labelled roofline points, telemetry with trial
boundaries, heatmaps (fleet health, pairwise matrices) and control charts.

Text stays text (``svg.fonttype: none``), so the page is searchable and small; nothing is
fetched, no script is embedded. Labels come from stored data: they are shown as written
(control characters escaped, ``$`` never read as mathtext), and matplotlib's SVG writer
escapes them for XML.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit: a report is written on any machine

import matplotlib.pyplot as plt
from matplotlib.ticker import EngFormatter, FuncFormatter, LogLocator, MaxNLocator

from harness.present.visible import visible

WIDTH_IN, HEIGHT_IN = 8.0, 3.6
STYLE = {
    "svg.fonttype": "none",
    "svg.hashsalt": "harness",  # stable ids: two reports of one campaign are identical
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 8,
    "legend.frameon": False,
}


@dataclass(frozen=True)
class Point:
    """A median with its 95% confidence interval (None where unknown)."""

    value: float
    low: float | None = None
    high: float | None = None


def text(label: object) -> str:
    """A stored string as a chart label: visible escapes for control characters, and ``$``
    escaped so matplotlib never parses it as mathtext."""
    return visible(str(label)).replace("$", r"\$")


def _svg(fig: plt.Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]  # drop the XML declaration and DOCTYPE: inline in HTML
    return re.sub(r"^<svg ", '<svg class="chart" role="img" ', svg, count=1)


def _errors(points: Sequence[Point]) -> list[list[float]] | None:
    if not any(p.low is not None and p.high is not None for p in points):
        return None
    lower = [max(0.0, p.value - p.low) if p.low is not None else 0.0 for p in points]
    upper = [max(0.0, p.high - p.value) if p.high is not None else 0.0 for p in points]
    return [lower, upper]


def _legend(ax: plt.Axes, n: int) -> None:
    """Beside the plot, never over it, in as many columns as it takes."""
    if n:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 if n <= 14 else 2)


def bars(title: str, groups: dict[str, dict[str, Point]], unit: str) -> str:
    """Grouped bars: one group per parameter set, one bar per series (node or campaign),
    with 95% CI error bars. Group labels are shown whole, wrapped, never cut."""
    series = list(dict.fromkeys(s for g in groups.values() for s in g))
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(max(5.5, 1.1 * len(groups) + 3), HEIGHT_IN))
        width = 0.8 / max(1, len(series))
        for j, name in enumerate(series):
            xs = [
                i + (j - (len(series) - 1) / 2) * width
                for i, g in enumerate(groups.values())
                if name in g
            ]
            pts = [g[name] for g in groups.values() if name in g]
            container = ax.bar(
                xs,
                [p.value for p in pts],
                width,
                yerr=_errors(pts),
                capsize=2,
                label=text(name),
            )
            for i, patch in enumerate(container.patches):  # ids the tests and a reader find
                patch.set_gid(f"bar-{j}-{i}")
            if container.errorbar is not None:
                for k, line in enumerate(container.errorbar.lines[2]):
                    line.set_gid(f"ci-{j}-{k}")
        ax.set_xticks(range(len(groups)), [_wrap(text(g), 18) for g in groups], fontsize=7)
        ax.set_ylabel(text(unit))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6))
        ax.set_title(text(title), loc="left")
        _legend(ax, len(series))
        return _svg(fig)


def lines(
    title: str,
    series: dict[str, list[tuple[float, Point]]],
    x_label: str,
    unit: str,
    *,
    log_x: bool = True,
) -> str:
    """One line per series (x ascending) with 95% CI error bars; log x where it is a size."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(WIDTH_IN, HEIGHT_IN))
        for name, pts in series.items():
            pts = sorted(pts, key=lambda xp: xp[0])
            ax.errorbar(
                [x for x, _ in pts],
                [p.value for _, p in pts],
                yerr=_errors([p for _, p in pts]),
                marker="o",
                markersize=3,
                capsize=2,
                label=text(name),
            )
        if log_x and all(x > 0 for pts in series.values() for x, _ in pts):
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(FuncFormatter(_size_tick))
        ax.set_xlabel(text(x_label))
        ax.set_ylabel(text(unit))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6))
        ax.set_title(text(title), loc="left")
        _legend(ax, len(series))
        return _svg(fig)


def timeline(
    title: str,
    series: dict[str, list[tuple[float, float]]],
    unit: str,
    trials: Sequence[tuple[str, float, float]],
) -> str:
    """Telemetry against seconds into the campaign, each trial's window shaded and named,
    so a spike can be put on the trial that caused it."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(WIDTH_IN, HEIGHT_IN))
        for i, (name, start, end) in enumerate(trials):
            ax.axvspan(start, end, color="#999" if i % 2 else "#ccc", alpha=0.25, lw=0)
            ax.annotate(
                text(name),
                xy=((start + end) / 2, 1.0),
                xycoords=("data", "axes fraction"),
                ha="center",
                va="bottom",
                fontsize=6,
            )
        for name, pts in series.items():
            ax.plot([t for t, _ in pts], [v for _, v in pts], ".", markersize=2, label=text(name))
        ax.set_xlabel("seconds into the campaign")
        ax.set_ylabel(text(unit))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6))
        ax.set_title(text(title), loc="left", pad=14)
        _legend(ax, len(series))
        return _svg(fig)


def roofline(
    title: str,
    points: dict[str, list[tuple[float, float, str]]],
    peak: float,
    bandwidth: float,
    source: str,
) -> str:
    """Log-log roofline: the compute peak and the bandwidth slope, each trial a point at its
    arithmetic intensity, labelled with what tells it apart."""
    xs = [x for pts in points.values() for x, _, _ in pts]
    lo = min([*xs, peak / bandwidth]) / 4
    hi = max([*xs, peak / bandwidth]) * 4
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(WIDTH_IN, HEIGHT_IN + 0.8))
        grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
        ax.plot(grid, [min(peak, bandwidth * x) for x in grid], color="#333", lw=1.2)
        ax.annotate(
            f"{source}: {peak:.3g} peak, {bandwidth:.3g} per FLOP/byte",
            xy=(0.01, 0.98),
            xycoords="axes fraction",
            va="top",
            fontsize=7,
        )
        for name, pts in points.items():
            ax.plot([x for x, _, _ in pts], [y for _, y, _ in pts], "o", label=text(name))
            for x, y, label in pts:
                ax.annotate(
                    text(label), (x, y), textcoords="offset points", xytext=(4, -8), fontsize=6
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10))
        ax.set_xlim(lo, hi)
        ax.set_ylim(top=peak * 2)
        ax.set_xlabel("arithmetic intensity (FLOP/byte)")
        ax.set_ylabel("achieved")
        ax.set_title(text(title), loc="left")
        _legend(ax, len(points))
        return _svg(fig)


def xy(
    title: str,
    series: dict[str, list[tuple[float, float]]],
    x_label: str,
    y_label: str,
    *,
    frontier: Sequence[tuple[float, float]] | None = None,
    log_x: bool = False,
) -> str:
    """Points of each series joined in x order (a load sweep traces its curve); a frontier,
    when given, drawn over them as a dashed line."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(WIDTH_IN, HEIGHT_IN))
        for name, pts in series.items():
            pts = sorted(pts)
            ax.plot(
                [x for x, _ in pts], [y for _, y in pts], marker="o", markersize=3, label=text(name)
            )
        if frontier:
            xs, ys = zip(*sorted(frontier), strict=True)
            ax.plot(xs, ys, color="#333", lw=1.4, ls="--", label="Pareto frontier", gid="frontier")
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel(text(x_label))
        ax.set_ylabel(text(y_label))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6))
        ax.set_title(text(title), loc="left")
        _legend(ax, len(series) + bool(frontier))
        return _svg(fig)


def heatmap(
    title: str,
    rows: Sequence[str],
    columns: Sequence[str],
    values: Sequence[Sequence[float | None]],
    notes: Sequence[Sequence[str]],
    *,
    diverging: bool,
    colour_label: str,
) -> str:
    """A grid of cells, each written with its note. ``diverging``: red below zero, blue
    above, white at zero, clipped at +-6 (distance from a baseline, oriented so that worse
    is negative); else one sequential scale (a matrix of figures). Empty cells stay blank."""
    import numpy as np

    grid = np.array([[np.nan if v is None else v for v in row] for row in values], dtype=float)
    with plt.rc_context({**STYLE, "axes.grid": False}):
        fig, ax = plt.subplots(
            figsize=(max(4.0, 1.0 * len(columns) + 2.5), max(2.0, 0.32 * len(rows) + 1.2))
        )
        if diverging:
            image = ax.imshow(grid, cmap="RdBu", vmin=-6, vmax=6, aspect="auto")
        else:
            image = ax.imshow(grid, cmap="viridis", aspect="auto")
        for i, row in enumerate(notes):
            for j, note in enumerate(row):
                if note:
                    shade = image.norm(grid[i, j]) if not np.isnan(grid[i, j]) else 0.5
                    dark = shade > 0.85 or shade < 0.15 if diverging else shade < 0.5
                    ax.text(
                        j,
                        i,
                        text(note),
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if dark else "black",
                        gid=f"cell-{i}-{j}",
                    )
        ax.set_xticks(range(len(columns)), [_wrap(text(c), 14) for c in columns], fontsize=7)
        ax.set_yticks(range(len(rows)), [text(r) for r in rows], fontsize=7)
        ax.xaxis.tick_top()
        ax.set_title(text(title), loc="left", pad=24)
        fig.colorbar(image, ax=ax, label=text(colour_label), shrink=0.8)
        return _svg(fig)


def control(
    title: str,
    points: Sequence[tuple[float, float, bool]],
    centre: float,
    limit: float,
    unit: str,
    spreads: Sequence[tuple[float, float, float]] = (),
    transient: Sequence[tuple[float, float]] = (),
) -> str:
    """A control chart: each trial's median against when it ran (seconds since the first),
    the reference's centre line and its control limits (centre +- limit) drawn; this
    campaign's trials in a second colour, so a drift or one bad node stands out. Trials
    measured in rounds carry a bar over their round medians' CI (the between-round spread);
    first readings that did not repeat when measured again are crosses, apart from the
    confirmed figures."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(WIDTH_IN, HEIGHT_IN))
        times = [t for t, _, _ in points] + [t for t, _ in transient]
        t0 = min(times)
        span = max(times) - t0
        scale, unit_name = next(
            (s, n)
            for s, n in ((86400, "days"), (3600, "hours"), (60, "minutes"), (1, "seconds"))
            if span >= 2 * s or s == 1
        )
        for mine, colour, name in ((False, "#777", "history"), (True, "#d62728", "this campaign")):
            pts = [((t - t0) / scale, v) for t, v, m in points if m == mine]
            if pts:
                ax.plot(*zip(*pts, strict=True), "o", color=colour, markersize=3, label=name)
        if spreads:
            ax.vlines([(t - t0) / scale for t, _, _ in spreads], [lo for _, lo, _ in spreads],
                      [hi for _, _, hi in spreads], color="#1f77b4", lw=1,
                      label="between rounds (CI of the round medians)")  # fmt: skip
        if transient:
            ax.plot([(t - t0) / scale for t, _ in transient], [v for _, v in transient], "x",
                    color="#ff7f0e", markersize=5, label="transient (did not repeat)")  # fmt: skip
        ax.axhline(centre, color="#333", lw=1, label=f"centre {centre:.4g}")
        if limit > 0:
            ax.axhspan(centre - limit, centre + limit, color="#2ca02c", alpha=0.12, lw=0)
            for y in (centre - limit, centre + limit):
                ax.axhline(y, color="#2ca02c", lw=0.8, ls="--")
            ax.plot([], [], color="#2ca02c", ls="--", label=f"control limits ±{limit:.3g}")
        ax.set_xlabel(f"{unit_name} since the first trial shown")
        ax.set_ylabel(text(unit))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6))
        ax.set_title(text(title), loc="left")
        _legend(ax, 4)
        return _svg(fig)


def _size_tick(value: float, _pos: object = None) -> str:
    """Sizes as written in playbooks (256, 1024, 65536), engineering notation past 10^6."""
    if value < 1e6 and value == int(value):
        return str(int(value))
    return EngFormatter(sep="")(value)


def _wrap(label: str, width: int) -> str:
    """Break a long label at spaces into lines of about ``width`` characters."""
    lines: list[str] = []
    for word in label.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "\n".join(lines) or label
