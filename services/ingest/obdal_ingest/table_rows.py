"""A table row as text that stands on its own: each value next to its column header."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["record_text"]


def record_text(headers: Sequence[str], values: Sequence[str]) -> str:
    """``Header: value`` lines for the non-empty values of one row (one chunkable block)."""
    lines = []
    for n, value in enumerate(values):
        if not value.strip():
            continue
        header = headers[n].strip() if n < len(headers) else ""
        lines.append(f"{header}: {value.strip()}" if header else value.strip())
    return "\n".join(lines)
