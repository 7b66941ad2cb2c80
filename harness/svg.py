"""Small inline-SVG charts for the HTML report: bars, lines (log x), roofline, time series.

No scripts, no external resources: every chart is markup in the page, every label escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from harness.visible import html_text as escape

W, H = 720, 300
M_LEFT, M_RIGHT, M_TOP, M_BOTTOM = 70, 170, 30, 60
COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def _frame(title: str, body: str, x_label: str, y_label: str) -> str:
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" role="img"><title>{escape(title)}</title>'
        f'<text x="{W / 2}" y="18" text-anchor="middle" font-weight="bold">{escape(title)}</text>'
        f'<line x1="{M_LEFT}" y1="{H - M_BOTTOM}" x2="{W - M_RIGHT}" y2="{H - M_BOTTOM}" '
        f'stroke="#333"/>'
        f'<line x1="{M_LEFT}" y1="{M_TOP}" x2="{M_LEFT}" y2="{H - M_BOTTOM}" stroke="#333"/>'
        f'<text x="{(M_LEFT + W - M_RIGHT) / 2}" y="{H - 8}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
        f'<text transform="translate(14 {(M_TOP + H - M_BOTTOM) / 2}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>{body}</svg>'
    )


class _Scale:
    def __init__(self, lo: float, hi: float, a: float, b: float, log: bool = False) -> None:
        self.log = log
        if log:
            lo, hi = math.log10(lo), math.log10(hi)
        if hi <= lo:
            hi = lo + 1.0
        self.lo, self.hi, self.a, self.b = lo, hi, a, b

    def __call__(self, v: float) -> float:
        v = math.log10(v) if self.log else v
        return self.a + (v - self.lo) / (self.hi - self.lo) * (self.b - self.a)

    def ticks(self, n: int = 5) -> list[float]:
        if self.log:
            return [
                10**e
                for e in range(math.floor(self.lo), math.ceil(self.hi) + 1)
                if self.lo - 1e-9 <= e <= self.hi + 1e-9
            ]
        return [self.lo + i * (self.hi - self.lo) / (n - 1) for i in range(n)]


def _axes(x: _Scale | None, y: _Scale) -> str:
    out = []
    for v in y.ticks():
        py = y(v)
        out.append(
            f'<text x="{M_LEFT - 6}" y="{py + 4}" text-anchor="end" font-size="11">{_fmt(v)}</text>'
            f'<line x1="{M_LEFT}" y1="{py}" x2="{W - M_RIGHT}" y2="{py}" stroke="#eee"/>'
        )
    for v in x.ticks() if x else []:
        px = x(v)
        out.append(
            f'<text x="{px}" y="{H - M_BOTTOM + 16}" text-anchor="middle" font-size="11">'
            f"{_fmt(v)}</text>"
        )
    return "".join(out)


def _legend(names: Sequence[str]) -> str:
    return "".join(
        f'<rect x="{W - M_RIGHT + 10}" y="{M_TOP + 16 * i}" width="10" height="10" '
        f'fill="{COLOURS[i % len(COLOURS)]}"/>'
        f'<text x="{W - M_RIGHT + 24}" y="{M_TOP + 9 + 16 * i}" '
        f'font-size="11">{escape(name[:26])}</text>'
        for i, name in enumerate(names)
    )


def bars(title: str, groups: dict[str, dict[str, float]], y_label: str) -> str:
    """Grouped bars: {group label: {series name: value}} (series = node or campaign)."""
    series = sorted({s for g in groups.values() for s in g})
    values = [v for g in groups.values() for v in g.values()]
    if not values:
        return ""
    y = _Scale(0.0, max(values) * 1.1, H - M_BOTTOM, M_TOP)
    width = (W - M_LEFT - M_RIGHT) / max(len(groups), 1)
    bar = width * 0.8 / max(len(series), 1)
    body = [_axes(None, y)]
    for gi, (label, g) in enumerate(groups.items()):
        x0 = M_LEFT + gi * width + width * 0.1
        for si, name in enumerate(series):
            if name in g:
                top = y(g[name])
                body.append(
                    f'<rect class="bar" x="{x0 + si * bar:.1f}" y="{top:.1f}" width="{bar:.1f}" '
                    f'height="{H - M_BOTTOM - top:.1f}" fill="{COLOURS[si % len(COLOURS)]}">'
                    f"<title>{escape(name)}: {_fmt(g[name])}</title></rect>"
                )
        body.append(
            f'<text x="{x0 + width * 0.4:.1f}" y="{H - M_BOTTOM + 14}" font-size="10" '
            f'text-anchor="middle">{escape(label[:24])}</text>'
        )
    body.append(_legend(series))
    return _frame(title, "".join(body), "", y_label)


def lines(
    title: str,
    series: dict[str, list[tuple[float, float]]],
    x_label: str,
    y_label: str,
    log_x: bool = True,
    log_y: bool = False,
    hlines: Sequence[tuple[str, float]] = (),
    joined: bool = True,
) -> str:
    """Lines over (x, y) points per series (points only with ``joined=False``, for samples
    with gaps between them); optional horizontal reference lines."""
    points = [p for pts in series.values() for p in pts]
    if not points:
        return ""
    xs, ys = [p[0] for p in points], [p[1] for p in points] + [v for _, v in hlines]
    x = _Scale(min(xs), max(xs), M_LEFT, W - M_RIGHT, log_x)
    y = _Scale(min(ys) if log_y else 0.0, max(ys) * 1.1, H - M_BOTTOM, M_TOP, log_y)
    body = [_axes(x, y)]
    for i, (_name, pts) in enumerate(series.items()):
        c = COLOURS[i % len(COLOURS)]
        if joined:
            path = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in sorted(pts))
            body.append(
                f'<polyline class="series" fill="none" stroke="{c}" stroke-width="2" '
                f'points="{path}"/>'
            )
        body += [
            f'<circle cx="{x(a):.1f}" cy="{y(b):.1f}" r="3" fill="{c}"><title>{_fmt(a)}: '
            f"{_fmt(b)}</title></circle>"
            for a, b in pts
        ]
    for label, v in hlines:
        body.append(
            f'<line x1="{M_LEFT}" x2="{W - M_RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
            f'stroke="#999" stroke-dasharray="4 3"/><text x="{W - M_RIGHT - 4}" '
            f'y="{y(v) - 4:.1f}" text-anchor="end" font-size="10">{escape(label)}</text>'
        )
    body.append(_legend(list(series)))
    return _frame(title, "".join(body), x_label, y_label)


def roofline(
    title: str,
    points: dict[str, list[tuple[float, float]]],
    peak_tflops: float,
    bandwidth_gbs: float,
    source: str,
) -> str:
    """Log-log roofline: attained TFLOP/s against arithmetic intensity (FLOP/byte), under
    min(peak, bandwidth x intensity)."""
    pts = [p for ps in points.values() for p in ps]
    if not pts or peak_tflops <= 0 or bandwidth_gbs <= 0:
        return ""
    ridge = peak_tflops * 1e3 / bandwidth_gbs  # FLOP/byte where the roofs meet
    lo_x = min([p[0] for p in pts] + [ridge]) / 4
    hi_x = max([p[0] for p in pts] + [ridge]) * 4
    roof = [(lo_x, bandwidth_gbs * lo_x / 1e3), (ridge, peak_tflops), (hi_x, peak_tflops)]
    lo_y = min([p[1] for p in pts] + [roof[0][1]]) / 2
    x = _Scale(lo_x, hi_x, M_LEFT, W - M_RIGHT, log=True)
    y = _Scale(lo_y, peak_tflops * 2, H - M_BOTTOM, M_TOP, log=True)
    path = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in roof)
    body = [
        _axes(x, y),
        f'<polyline class="roof" fill="none" stroke="#000" stroke-width="2" '
        f'points="{path}"/><text x="{x(hi_x) - 4}" y="{y(peak_tflops) - 6}" text-anchor="end" '
        f'font-size="10">{escape(source)}: {_fmt(peak_tflops)} TFLOP/s, '
        f"{_fmt(bandwidth_gbs)} GB/s</text>",
    ]
    for i, (_name, ps) in enumerate(points.items()):
        c = COLOURS[i % len(COLOURS)]
        body += [
            f'<circle class="point" cx="{x(a):.1f}" cy="{y(b):.1f}" r="4" fill="{c}"><title>'
            f"{_fmt(a)} FLOP/B: {_fmt(b)} TFLOP/s</title></circle>"
            for a, b in ps
        ]
    body.append(_legend(list(points)))
    return _frame(title, "".join(body), "arithmetic intensity (FLOP/byte)", "TFLOP/s")
