"""Small helpers for the sentences the kit prints."""

from __future__ import annotations


def plural(count: int, word: str, many: str | None = None) -> str:
    """``"1 worker"``, ``"3 workers"``; give ``many`` for irregular words (``"were"``)."""
    return f"{count} {word if count == 1 else (many or word + 's')}"
