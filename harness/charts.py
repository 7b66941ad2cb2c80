"""The report's charts, drawn by matplotlib as inline SVG: grouped bars with 95% CI error
bars, sweeps (log x) with error bars, labelled roofline points, telemetry with trial
boundaries.

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

from harness.visible import visible

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
