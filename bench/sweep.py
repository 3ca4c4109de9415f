"""Latency capacity: which offered rates to measure, what the capacity is, and the plot.

Pure (no I/O): :mod:`scenarios` measures open-loop points and feeds them to a
:class:`RateSearch` per system, which says which rate to measure next:

1. a geometric grid from ``start`` (x ``factor``) until a point misses the largest
   budget (or ``max_rate``); below ``start`` it halves, down to ``start / 8``, while
   even the lowest point misses the smallest budget (a busy machine);
2. then, for each budget, bisection between the highest rate that met it and the
   lowest rate above that which missed it, until the bracket is narrower than
   ``resolution`` (a fraction of the lower end) or ``steps`` points were spent.

A point *meets* a budget when its p99 is at most the budget and every request got
its correct reply (``sent == ok``). The statistic is the window's p99 (``p99``,
strict) or, on a machine shared with other work, the median of the p99s of the
window's consecutive slices (``median_slice_p99``): a burst of someone else's load
then spoils the slices it falls in rather than the whole point. The capacity at a
budget is the highest rate measured that met it with no lower-rate point missing
it (p99 is noisy; a miss below a pass caps the capacity at the rate below the miss).

:func:`svg` draws the curves (offered rate -> p50 and p99, log-log) as a
self-contained SVG: hand-written rather than matplotlib, so the file is a few KB,
byte-for-byte reproducible from the JSON and needs no dependency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Point", "RateSearch", "capacity", "markdown", "svg"]


@dataclass(frozen=True, slots=True)
class Point:
    """One open-loop measurement at an offered rate."""

    rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    complete: bool  # every request sent got its correct reply
    slice_p99_ms: tuple[float, ...] = ()  # p99 of each slice of the window, if measured

    @property
    def median_slice_p99_ms(self) -> float:
        """The median of the slices' p99s (the window's p99 without slices)."""
        if not self.slice_p99_ms:
            return self.p99_ms
        ordered = sorted(self.slice_p99_ms)
        return ordered[len(ordered) // 2]

    def value(self, statistic: str) -> float:
        """``p99`` or ``median_slice_p99``, in ms."""
        return self.p99_ms if statistic == "p99" else self.median_slice_p99_ms

    def meets(self, budget_ms: float, statistic: str = "p99") -> bool:
        """The statistic within ``budget_ms`` and nothing wrong or lost."""
        return self.complete and self.value(statistic) <= budget_ms


STATISTICS = ("p99", "median_slice_p99")


def capacity(points: list[Point], budget_ms: float, statistic: str = "p99") -> float | None:
    """Highest rate meeting ``budget_ms`` below the lowest rate that misses it; None if none."""
    best = None
    for p in sorted(points, key=lambda p: p.rate):
        if not p.meets(budget_ms, statistic):
            break
        best = p.rate
    return best


@dataclass
class RateSearch:
    """Which rate to measure next for one system (see the module docstring)."""

    budgets_ms: tuple[float, ...]
    start: float
    factor: float = 2.0
    max_rate: float = 32_000.0
    min_rate: float | None = None  # lowest rate tried: start / 8 unless given
    resolution: float = 0.1
    steps: int = 8
    statistic: str = "p99"  # what the search bisects on (see the module docstring)
    points: list[Point] = field(default_factory=list)
    _bisections: int = 0

    def add(self, point: Point) -> None:
        """Record a measured point."""
        self.points.append(point)

    def next_rate(self) -> float | None:
        """The next offered rate to measure, or None when the search is done."""
        if not self.points:
            return self.start
        ordered = sorted(self.points, key=lambda p: p.rate)
        lowest, highest = ordered[0], ordered[-1]
        floor = self.min_rate if self.min_rate is not None else self.start / 8
        stat = self.statistic
        if not lowest.meets(min(self.budgets_ms), stat) and lowest.rate / 2 >= floor:
            return _round(lowest.rate / 2)
        if highest.meets(max(self.budgets_ms), stat) and highest.rate < self.max_rate:
            return _round(min(highest.rate * self.factor, self.max_rate))
        if self._bisections >= self.steps:
            return None
        widest: tuple[float, float] | None = None
        for budget in self.budgets_ms:
            lo = capacity(ordered, budget, stat)
            if lo is None:
                continue
            above = [p.rate for p in ordered if p.rate > lo and not p.meets(budget, stat)]
            if not above:
                continue
            hi = min(above)
            wider = widest is None or hi / lo > widest[1] / widest[0]
            if (hi - lo) / lo > self.resolution and wider:
                widest = (lo, hi)
        if widest is None:
            return None
        rate = _round((widest[0] + widest[1]) / 2)
        if rate in (p.rate for p in ordered):
            return None
        self._bisections += 1
        return rate

    def capacities(self, statistic: str | None = None) -> dict[str, float | None]:
        """``{"p99<=5ms": rate, ...}`` for each budget, by ``statistic`` (the search's)."""
        stat = statistic or self.statistic
        return {label(b): capacity(self.points, b, stat) for b in self.budgets_ms}


def label(budget_ms: float) -> str:
    """The JSON key of a budget: ``p99<=10ms``."""
    return f"p99<={budget_ms:g}ms"


def _round(rate: float) -> float:
    """Rates to a readable step: 10/s below 1,000/s, 50/s above."""
    step = 10 if rate < 1000 else 50
    return float(max(step, round(rate / step) * step))


def markdown(curves: dict[str, dict[str, Any]], budgets_ms: tuple[float, ...]) -> str:
    """A table: each system's capacity at each budget, then every point measured."""
    head = "| system | " + " | ".join(f"capacity at {label(b)}" for b in budgets_ms) + " |"
    rows = [head, "|---|" + "---:|" * len(budgets_ms)]
    for name, c in curves.items():
        caps = [c["capacity"].get(label(b)) for b in budgets_ms]
        rows.append(f"| {name} | " + " | ".join(_rate(x) for x in caps) + " |")
    rows += [
        "",
        "| system | offered req/s | p50 ms | p99 ms | median of slice p99s, ms | max ms "
        "| all replies ok | load avg |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name, c in curves.items():
        for p in sorted(c["points"], key=lambda p: p["rate"]):
            median = p.get("median_slice_p99_ms", p["p99_ms"])
            rows.append(
                f"| {name} | {p['rate']:,.0f} | {p['p50_ms']:.2f} | {p['p99_ms']:.2f} "
                f"| {median:.2f} | {p['max_ms']:.1f} | {'yes' if p['complete'] else 'NO'} "
                f"| {p.get('load_average_1m', '-')} |"
            )
    return "\n".join(rows)


def _rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}/s"


COLOURS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def svg(
    curves: dict[str, dict[str, Any]],
    budgets_ms: tuple[float, ...],
    title: str,
    width: int = 760,
    height: int = 440,
    statistic: str = "p99",
) -> str:
    """Offered rate (x, log) against p99 (solid) and p50 (dashed) latency (y, log), as SVG.

    ``curves``: ``{system: {"points": [{rate, p50_ms, p99_ms, ...}], "capacity": {...}}}``.
    Budgets are drawn as horizontal lines, each system's capacity at a budget as a dot.
    """
    left, right, top, bottom = 64, 180, 36, 48
    pw, ph = width - left - right, height - top - bottom
    pts = [p for c in curves.values() for p in c["points"]]
    rates = [p["rate"] for p in pts] or [100.0, 10_000.0]
    lats = [v for p in pts for v in (p["p50_ms"], p["p99_ms"])] + list(budgets_ms)
    x0, x1 = _decades(min(rates), max(rates))
    y0, y1 = _decades(max(min(lats), 0.1), min(max(lats), 100_000.0))

    def x(rate: float) -> float:
        return left + (math.log10(rate) - x0) / (x1 - x0) * pw

    def y(ms: float) -> float:
        ms = min(max(ms, 10**y0), 10**y1)
        return top + ph - (math.log10(ms) - y0) / (y1 - y0) * ph

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="20" font-size="14" font-weight="bold">{_esc(title)}</text>',
    ]
    for d in range(x0, x1 + 1):
        for m in (1, 2, 5):
            v = m * 10.0**d
            if x0 <= math.log10(v) <= x1:
                xv = x(v)
                stroke = "#ccc" if m == 1 else "#eee"
                out.append(_line(xv, top, xv, top + ph, stroke))
                out.append(_text(xv, top + ph + 16, f"{v:,.0f}", "middle"))
    for d in range(y0, y1 + 1):
        for m in (1, 2, 5):
            v = m * 10.0**d
            if y0 <= math.log10(v) <= y1:
                yv = y(v)
                out.append(_line(left, yv, left + pw, yv, "#ccc" if m == 1 else "#eee"))
                out.append(_text(left - 6, yv + 4, f"{v:g}", "end"))
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    out.append(_text(left + pw / 2, height - 10, "offered load, requests/s (log)", "middle"))
    out.append(
        f'<text transform="translate(16 {top + ph / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle">latency, ms (log)</text>'
    )
    for b in budgets_ms:
        out.append(_line(left, y(b), left + pw, y(b), "#555", dash="2 3"))
        out.append(_text(left + 4, y(b) - 4, f"budget {b:g} ms", "start"))
    legend_y = top + 8
    for i, (name, c) in enumerate(curves.items()):
        colour = COLOURS[i % len(COLOURS)]
        ordered = sorted(c["points"], key=lambda p: p["rate"])
        for key, dash in (("p99_ms", ""), ("p50_ms", "5 4"), ("median_slice_p99_ms", "1 3")):
            path = " ".join(f"{x(p['rate']):.1f},{y(p[key]):.1f}" for p in ordered if key in p)
            if path:
                extra = f' stroke-dasharray="{dash}"' if dash else ""
                out.append(
                    f'<polyline points="{path}" fill="none" stroke="{colour}" '
                    f'stroke-width="2"{extra}/>'
                )
        for p in ordered:
            out.append(
                f'<circle cx="{x(p["rate"]):.1f}" cy="{y(p["p99_ms"]):.1f}" r="2.5" '
                f'fill="{colour}"/>'
            )
        for b in budgets_ms:
            cap = c["capacity"].get(label(b))
            if cap:
                out.append(
                    f'<circle cx="{x(cap):.1f}" cy="{y(b):.1f}" r="5" fill="none" '
                    f'stroke="{colour}" stroke-width="2"/>'
                )
        ly = legend_y + i * 34
        lx = left + pw + 12
        out.append(_line(lx, ly, lx + 22, ly, colour, width=2))
        out.append(_text(lx + 28, ly + 4, name, "start"))
        caps = ", ".join(f"{b:g} ms: {_rate(c['capacity'].get(label(b)))}" for b in budgets_ms)
        out.append(_text(lx + 28, ly + 18, caps, "start", size=10))
    ly = legend_y + len(curves) * 34 + 6
    lx = left + pw + 12
    out.append(_line(lx, ly, lx + 22, ly, "#333", width=2))
    out.append(_text(lx + 28, ly + 4, "p99", "start"))
    out.append(_line(lx, ly + 16, lx + 22, ly + 16, "#333", width=2, dash="5 4"))
    out.append(_text(lx + 28, ly + 20, "p50", "start"))
    out.append(_line(lx, ly + 32, lx + 22, ly + 32, "#333", width=2, dash="1 3"))
    out.append(_text(lx + 28, ly + 36, "median of slice p99s", "start", size=10))
    out.append(
        _text(lx, ly + 56, "circle: capacity, the highest", "start", size=10)
        + _text(
            lx,
            ly + 68,
            "rate whose " + ("p99" if statistic == "p99" else "median of"),
            "start",
            size=10,
        )
        + _text(
            lx,
            ly + 80,
            ("" if statistic == "p99" else "slice p99s ") + "met the budget",
            "start",
            size=10,
        )
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _decades(lo: float, hi: float) -> tuple[int, int]:
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    return a, max(b, a + 1)


def _line(
    x1: float, y1: float, x2: float, y2: float, stroke: str, width: float = 1, dash: str = ""
) -> str:
    extra = f' stroke-dasharray="{dash}"' if dash else ""
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
        f'stroke="{stroke}" stroke-width="{width}"{extra}/>'
    )


def _text(x: float, y: float, text: str, anchor: str, size: int = 12) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}">'
        f"{_esc(text)}</text>"
    )


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
