"""Number and text formatting shared by the widgets (pure)."""

from __future__ import annotations

from tui.glyphs import NONE

__all__ = ["fmt_age", "fmt_count", "fmt_duration", "fmt_rate", "middle_truncate"]


def fmt_duration(seconds: float | None) -> str:
    """``0.0032`` -> ``3.2 ms``, ``0.25`` -> ``250 ms``, ``2.5`` -> ``2.50 s``; None -> a dash."""
    if seconds is None:
        return NONE
    ms = seconds * 1000
    if ms < 10:
        return f"{ms:.2f} ms"
    if ms < 100:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{seconds:.2f} s"


def fmt_count(value: int | None) -> str:
    """``1234`` -> ``1234``, ``123456`` -> ``123k``, ``12345678`` -> ``12.3M``; None -> a dash."""
    if value is None:
        return NONE
    if value < 100_000:
        return str(value)
    if value < 10_000_000:
        return f"{value // 1000}k"
    return f"{value / 1_000_000:.1f}M"


def fmt_rate(per_second: float | None) -> str:
    """Requests per second with sensible precision; None -> a dash."""
    if per_second is None:
        return NONE
    if per_second < 10:
        return f"{per_second:.1f}/s"
    return f"{per_second:.0f}/s"


def fmt_age(seconds: float) -> str:
    """How long ago: ``0.4 s``, ``12 s``, ``3 min``."""
    if seconds < 10:
        return f"{max(seconds, 0.0):.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def middle_truncate(text: str, width: int) -> str:
    """``text`` shortened to ``width`` by an ellipsis in the middle (keeps suffixes like .batch)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    tail = (width - 1) // 2 + (width - 1) % 2
    head = width - 1 - tail
    return text[:head] + "…" + text[len(text) - tail :]
