"""Turning uploaded bytes into text. Plain text and Markdown so far."""

from __future__ import annotations

from obdal_common.errors import UnsupportedMediaType

__all__ = ["PARSEABLE_TYPES", "ParseError", "parse"]

PARSEABLE_TYPES = frozenset({"text/plain", "text/markdown"})


class ParseError(Exception):
    """The file cannot be read; the reason is shown to the user as the file's error."""


def parse(data: bytes, *, content_type: str) -> str:
    """The document's text. Raises :class:`ParseError` for unreadable content."""
    if content_type not in PARSEABLE_TYPES:
        raise UnsupportedMediaType(f"cannot parse {content_type}")
    if b"\x00" in data[:8192]:
        raise ParseError("the file looks binary, not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError(f"the file is not valid UTF-8 text (byte {exc.start})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")
