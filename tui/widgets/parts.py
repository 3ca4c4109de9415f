"""A helper to build :class:`~textual.content.Content` from styled pieces."""

from __future__ import annotations

from textual.content import Content

__all__ = ["Parts"]


class Parts:
    """Collects ``(text, style)`` pieces; styles may use theme variables (``$text-error``)."""

    def __init__(self) -> None:
        self.pieces: list[str | tuple[str, str]] = []

    def append(self, text: str, style: str = "") -> None:
        """Add ``text`` in ``style`` (unstyled when empty)."""
        self.pieces.append((text, style) if style else text)

    def content(self) -> Content:
        """Everything appended so far as one Content."""
        return Content.assemble(*self.pieces)
