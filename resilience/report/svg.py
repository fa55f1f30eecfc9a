"""Charts as inline SVG strings: time-series lines with shaded windows, and trace waterfalls.

Drawn in Python so a report needs no JavaScript and no network to render, prints as it
shows, and diffs as text. Every chart has a fixed pixel size (its ``width``/``height``) and
an ``id``, so a browser test can find it and look at its pixels. All text is escaped here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

MARGIN_LEFT = 64
MARGIN_RIGHT = 16
MARGIN_TOP = 30
MARGIN_BOTTOM = 48
MAX_POINTS = 1500
MAX_TICKS = 50

PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
)
ERROR_COLOR = "#d62728"


def _num(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


@dataclass(frozen=True)
class Line:
    """A series to draw; ``None`` values leave a gap."""

    label: str
    color: str
    points: Sequence[tuple[float, float | None]]
    dash: str | None = None
    width: float = 1.5


@dataclass(frozen=True)
class Window:
    """A shaded span of the x axis (a fault being active, affected seconds)."""

    start: float
    end: float
    label: str = ""
    css_class: str = "fault-window"


@dataclass(frozen=True)
class Mark:
    """A vertical line at ``x`` with a label in the top margin (applied, healed, phase edge)."""

    x: float
    label: str
    css_class: str = "phase-mark"


def _default_format(value: float) -> str:
    if value != 0 and abs(value) < 0.01:
        return f"{value:.1e}"
    return f"{value:g}" if abs(value) < 1e4 else f"{value:.2g}"


@dataclass(frozen=True)
class LineChart:
    chart_id: str
    title: str
    y_label: str
    x_range: tuple[float, float]
    lines: Sequence[Line]
    windows: Sequence[Window] = ()
    marks: Sequence[Mark] = ()
    phases: Sequence[tuple[str, float, float]] = ()
    width: int = 1100
    height: int = 240
    log_y: bool = False
    x_label: str = "seconds since start"
    y_format: Callable[[float], str] = field(default=_default_format)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round-numbered ticks covering [lo, hi] (steps of 1, 2, 2.5 or 5 x 10^k)."""
    span = hi - lo
    if not math.isfinite(span) or span <= 0:
        return [lo]
    raw = span / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = magnitude * 10
    for multiple in (1, 2, 2.5, 5, 10):
        if multiple * magnitude >= raw:
            step = multiple * magnitude
            break
    first = math.ceil(lo / step - 1e-9) * step
    ticks: list[float] = []
    for i in range(MAX_TICKS):
        value = first + i * step
        if value > hi + step * 1e-9:
            break
        ticks.append(round(value, 10))
    return ticks


def downsample(
    points: Sequence[tuple[float, float | None]], limit: int = MAX_POINTS
) -> list[tuple[float, float | None]]:
    """At most ``limit`` points: each bucket keeps its largest value (peaks stay visible)."""
    if len(points) <= limit:
        return list(points)
    size = math.ceil(len(points) / limit)
    out: list[tuple[float, float | None]] = []
    for i in range(0, len(points), size):
        bucket = points[i : i + size]
        values = [v for _, v in bucket if v is not None]
        out.append((bucket[0][0], max(values) if values else None))
    return out


class _Scale:
    def __init__(self, lo: float, hi: float, a: float, b: float, *, log: bool = False) -> None:
        self.log = log
        self.lo = math.log10(lo) if log else lo
        self.hi = math.log10(hi) if log else hi
        self.a, self.b = a, b

    def __call__(self, value: float) -> float:
        v = math.log10(max(value, 10**self.lo)) if self.log else value
        span = self.hi - self.lo or 1.0
        return self.a + (v - self.lo) / span * (self.b - self.a)


def _y_domain(chart: LineChart) -> tuple[float, float]:
    values = [
        v for line in chart.lines for _, v in line.points if v is not None and math.isfinite(v)
    ]
    if chart.log_y:
        positive = [v for v in values if v > 0]
        if not positive:
            return 1.0, 10.0
        lo = 10 ** math.floor(math.log10(min(positive)))
        hi = 10 ** math.ceil(math.log10(max(positive)))
        return lo, hi if hi > lo else lo * 10
    if not values:
        return 0.0, 1.0
    lo = min(0.0, *values)
    hi = max(values)
    if hi <= lo:
        hi = lo + 1.0
    ticks = nice_ticks(lo, hi)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    top = ticks[-1] if ticks[-1] >= hi else ticks[-1] + step
    return lo, top


def _y_ticks(chart: LineChart, lo: float, hi: float) -> list[float]:
    if chart.log_y:
        first, last = round(math.log10(lo)), round(math.log10(hi))
        return [10.0**e for e in range(first, last + 1)][:MAX_TICKS]
    return nice_ticks(lo, hi)


def _path(points: Sequence[tuple[float, float | None]], sx: _Scale, sy: _Scale) -> str:
    parts: list[str] = []
    pen_down = False
    for x, y in points:
        if y is None or not math.isfinite(y):
            pen_down = False
            continue
        cmd = "L" if pen_down else "M"
        parts.append(f"{cmd}{_num(sx(x))} {_num(sy(y))}")
        pen_down = True
    return "".join(parts)


def line_chart(chart: LineChart) -> str:
    """An SVG line chart with shaded windows, vertical marks, phase names and a legend."""
    w, h = chart.width, chart.height
    left, right = MARGIN_LEFT, w - MARGIN_RIGHT
    top, bottom = MARGIN_TOP, h - MARGIN_BOTTOM
    x0, x1 = chart.x_range
    if x1 <= x0:
        x1 = x0 + 1.0
    sx = _Scale(x0, x1, left, right)
    y_lo, y_hi = _y_domain(chart)
    sy = _Scale(y_lo, y_hi, bottom, top, log=chart.log_y)
    # data-x tells the report's hover script how to map a pointer to seconds.
    out: list[str] = [
        f'<svg id="{escape(chart.chart_id)}" class="chart" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" role="img" aria-label="{escape(chart.title)}" '
        f'data-x="{_num(x0)},{_num(x1)},{left},{right}">',
        f"<title>{escape(chart.title)}</title>",
        f'<rect class="plot-bg" x="{left}" y="{top}" width="{right - left}" '
        f'height="{bottom - top}" fill="#fafafa" stroke="#ccc"/>',
    ]
    for window in chart.windows:
        a, b = max(window.start, x0), min(window.end, x1)
        if b <= a:
            continue
        out.append(
            f'<rect class="{escape(window.css_class)}" x="{_num(sx(a))}" y="{top}" '
            f'width="{_num(max(sx(b) - sx(a), 1.0))}" height="{bottom - top}">'
            f"<title>{escape(window.label)}</title></rect>"
        )
    for name, start, end in chart.phases:
        a, b = max(start, x0), min(end, x1)
        if b > a:
            out.append(
                f'<text class="phase-label" x="{_num(sx(a) + 4)}" y="{top + 12}">'
                f"{escape(name)}</text>"
            )
    for tick in _y_ticks(chart, y_lo, y_hi):
        y = _num(sy(tick))
        out.append(f'<line class="grid" x1="{left}" y1="{y}" x2="{right}" y2="{y}"/>')
        out.append(
            f'<text class="tick" x="{left - 6}" y="{y}" text-anchor="end" '
            f'dominant-baseline="middle">{escape(chart.y_format(tick))}</text>'
        )
    for tick in nice_ticks(x0, x1, 10):
        x = _num(sx(tick))
        out.append(f'<line class="axis" x1="{x}" y1="{bottom}" x2="{x}" y2="{bottom + 4}"/>')
        out.append(
            f'<text class="tick" x="{x}" y="{bottom + 16}" text-anchor="middle">{tick:g}</text>'
        )
    for i, mark in enumerate(chart.marks):
        if not x0 <= mark.x <= x1:
            continue
        x = _num(sx(mark.x))
        # Alternate two label rows so an apply and a heal a second apart stay readable.
        label_y = 12 if i % 2 == 0 else 24
        out.append(
            f'<line class="{escape(mark.css_class)}" x1="{x}" y1="{top}" x2="{x}" y2="{bottom}"/>'
        )
        out.append(
            f'<text class="mark-label" x="{x}" y="{label_y}" text-anchor="middle">'
            f"{escape(mark.label)}</text>"
        )
    for line in chart.lines:
        points = downsample(line.points)
        d = _path(points, sx, sy)
        if not d:
            continue
        dash = f' stroke-dasharray="{escape(line.dash)}"' if line.dash else ""
        out.append(
            f'<path class="series" d="{d}" fill="none" stroke="{escape(line.color)}" '
            f'stroke-width="{line.width:g}" stroke-linecap="round" stroke-linejoin="round"{dash} '
            f"{_hover_data(line.label, points, chart.y_format)}>"
            f"<title>{escape(line.label)}</title></path>"
        )
    out.append(
        f'<line class="hover-cursor" x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" '
        'visibility="hidden"/>'
    )
    out.append(
        f'<text class="axis-label" x="{left}" y="{h - 8}">{escape(chart.x_label)}'
        f" · y: {escape(chart.y_label)}</text>"
    )
    legend_x = right
    for line in reversed(chart.lines):
        text = line.label if len(line.label) <= 40 else line.label[:39] + "…"
        label = escape(text)
        width = 18 + 7 * len(text)
        legend_x -= width + 12
        out.append(
            f'<rect x="{legend_x}" y="{h - 16}" width="12" height="4" fill="{escape(line.color)}"/>'
            f'<text class="legend" x="{legend_x + 16}" y="{h - 11}">{label}</text>'
        )
    out.append("</svg>")
    return "".join(out)


HOVER_SEPARATOR = "|"


def _hover_data(
    label: str, points: Sequence[tuple[float, float | None]], fmt: Callable[[float], str]
) -> str:
    """The values the hover script shows: times and already formatted values, as attributes."""
    ts = HOVER_SEPARATOR.join(_num(x) for x, _ in points)
    vs = HOVER_SEPARATOR.join(
        fmt(v).replace(HOVER_SEPARATOR, "/") if v is not None and math.isfinite(v) else ""
        for _, v in points
    )
    return f'data-label="{escape(label)}" data-t="{ts}" data-v="{escape(vs)}"'


@dataclass(frozen=True)
class Bar:
    """One waterfall row: a span placed on the trace's own time axis (milliseconds)."""

    label: str
    group: str
    start_ms: float
    duration_ms: float
    depth: int = 0
    error: bool = False
    highlighted: bool = False
    tooltip: str = ""


WATERFALL_ROW = 18
WATERFALL_LABEL = 380
WATERFALL_TOP = 34
WATERFALL_MAX_ROWS = 200


def waterfall(chart_id: str, title: str, bars: Sequence[Bar], *, width: int = 1100) -> str:
    """Spans as horizontal bars by service; the highlighted span gets a heavy outline."""
    rows = list(bars[:WATERFALL_MAX_ROWS])
    groups = list(dict.fromkeys(b.group for b in rows))
    colors = {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(groups)}
    total = max((b.start_ms + b.duration_ms for b in rows), default=1.0) or 1.0
    left, right = WATERFALL_LABEL, width - MARGIN_RIGHT
    height = WATERFALL_TOP + WATERFALL_ROW * len(rows) + 30
    sx = _Scale(0.0, total, left, right)
    out = [
        f'<svg id="{escape(chart_id)}" class="chart waterfall" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for tick in nice_ticks(0.0, total, 8):
        x = _num(sx(tick))
        out.append(
            f'<line class="grid" x1="{x}" y1="{WATERFALL_TOP - 4}" x2="{x}" '
            f'y2="{height - 30}"/><text class="tick" x="{x}" y="{WATERFALL_TOP - 8}" '
            f'text-anchor="middle">{escape(_ms_label(tick))}</text>'
        )
    for i, bar in enumerate(rows):
        y = WATERFALL_TOP + i * WATERFALL_ROW
        label = bar.label if len(bar.label) <= 52 else bar.label[:51] + "…"
        indent = min(bar.depth, 12) * 10
        bar_x = sx(bar.start_ms)
        bar_w = max(sx(bar.start_ms + bar.duration_ms) - bar_x, 1.5)
        css = "span-bar"
        stroke = ""
        if bar.error:
            css += " span-error"
            stroke = f' stroke="{ERROR_COLOR}" stroke-width="1.5"'
        if bar.highlighted:
            css += " explaining-span"
            stroke = ' stroke="#000" stroke-width="3"'
            out.append(
                f'<rect class="highlight-row" x="0" y="{y}" width="{width}" '
                f'height="{WATERFALL_ROW}" fill="#fff3bf"/>'
            )
        out.append(
            f'<text class="span-label" x="{4 + indent}" y="{y + 13}">{escape(label)}</text>'
            f'<rect class="{css}" x="{_num(bar_x)}" y="{y + 3}" width="{_num(bar_w)}" '
            f'height="{WATERFALL_ROW - 6}" fill="{colors[bar.group]}"{stroke}>'
            f"<title>{escape(bar.tooltip or bar.label)}</title></rect>"
        )
    legend_x = left
    for group in groups:
        out.append(
            f'<rect x="{legend_x}" y="{height - 18}" width="12" height="8" '
            f'fill="{colors[group]}"/><text class="legend" x="{legend_x + 16}" '
            f'y="{height - 10}">{escape(group)}</text>'
        )
        legend_x += 28 + 7 * len(group)
    if len(bars) > len(rows):
        out.append(
            f'<text class="legend" x="4" y="{height - 10}">'
            f"{len(bars) - len(rows)} more spans not drawn</text>"
        )
    out.append("</svg>")
    return "".join(out)


def _ms_label(value: float) -> str:
    return f"{value / 1000:g} s" if value >= 1000 else f"{value:g} ms"


def budget_bar(
    chart_id: str, seconds: float | None, budget: float | None, recovered: bool, *, width: int = 640
) -> str:
    """Recovery time against its budget as two bars; a run that never recovered fills the scale."""
    if seconds is None and budget is None and recovered:
        return ""
    left, right = 110, width - 100
    known = [v for v in (seconds, budget) if v is not None]
    top = max(known) * 1.2 if known and max(known) > 0 else 1.0
    sx = _Scale(0.0, top, left, right)
    within = recovered and seconds is not None and (budget is None or seconds <= budget)
    color = "#2ca02c" if within else ERROR_COLOR
    rows: list[tuple[str, float | None, str, str]] = [
        ("budget", budget, "#9e9e9e", "no budget" if budget is None else f"{budget:.1f} s"),
        (
            "recovery",
            seconds if recovered else top,
            color,
            f"{seconds:.1f} s" if recovered and seconds is not None else "not recovered",
        ),
    ]
    out = [
        f'<svg id="{escape(chart_id)}" class="chart" width="{width}" height="64" '
        f'viewBox="0 0 {width} 64" role="img" aria-label="recovery time against budget">'
    ]
    for i, (label, value, fill, text) in enumerate(rows):
        y = 6 + i * 28
        out.append(f'<text class="tick" x="4" y="{y + 15}">{escape(label)}</text>')
        if value is not None:
            bar_w = max(sx(value) - left, 1.5)
            out.append(
                f'<rect class="budget-{escape(label)}" x="{left}" y="{y}" width="{_num(bar_w)}" '
                f'height="20" fill="{fill}"/>'
            )
            out.append(
                f'<text class="tick" x="{_num(left + bar_w + 6)}" y="{y + 15}">{escape(text)}</text>'
            )
        else:
            out.append(f'<text class="tick" x="{left}" y="{y + 15}">{escape(text)}</text>')
    out.append("</svg>")
    return "".join(out)
