"""Turning uploaded bytes into structured text: Markdown-like blocks, pages split by form feeds.

Every format parser returns a :class:`ParsedDocument` whose text uses one
convention the chunker understands: ``#`` headings, blank lines between blocks
(paragraphs, list items, table rows, records) and ``\\f`` between pages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from obdal_common.errors import UnprocessableContent, UnsupportedMediaType
from obdal_common.formats import CONTENT_TYPES, CSV, DOCX, HTML, MARKDOWN, PDF, TEXT

__all__ = [
    "PAGE_BREAK",
    "Limits",
    "ParseError",
    "ParsedDocument",
    "TooMuchText",
    "decode_text",
    "load_parsers",
    "parse",
]

PAGE_BREAK = "\f"


class ParseError(UnprocessableContent):
    """The file cannot be read; the reason is shown to the user as the file's error."""

    default_code = "unreadable_file"


class TooMuchText(ParseError):
    """The file holds more text than one file may (``OBDAL_MAX_FILE_CHARS``)."""

    default_code = "too_much_text"


@dataclass(frozen=True, slots=True)
class Limits:
    """What one file may amount to; parsers check ``max_chars`` as their text grows, so an
    oversized file stops being read at the limit rather than after the whole of it."""

    max_pages: int
    max_chars: int | None = None

    def check(self, chars: int) -> None:
        """:class:`TooMuchText` once the text read so far (``chars``) is over the limit."""
        if self.max_chars is not None and chars > self.max_chars:
            raise TooMuchText(
                f"the file holds more than {self.max_chars:,} characters of text, the limit for one"
                " file (OBDAL_MAX_FILE_CHARS); split it into smaller files"
            )


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    text: str
    title: str = ""
    pages: int | None = None  # only for paged formats (PDF)


def decode_text(data: bytes) -> str:
    """UTF-8 text with normalised newlines; :class:`ParseError` for binary or other encodings."""
    if b"\x00" in data[:8192]:
        raise ParseError("the file looks binary, not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError(f"the file is not valid UTF-8 text (byte {exc.start})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n").replace(PAGE_BREAK, "\n")


def _plain(data: bytes, _: Limits) -> ParsedDocument:
    return ParsedDocument(text=decode_text(data))


@cache
def load_parsers() -> dict[str, Callable[[bytes, Limits], ParsedDocument]]:
    """The parser of each content type (importing their libraries: done once, in the parse process)."""
    from obdal_ingest.parse_csv import parse_csv
    from obdal_ingest.parse_docx import parse_docx
    from obdal_ingest.parse_html import parse_html
    from obdal_ingest.parse_pdf import parse_pdf

    return {
        TEXT: _plain,
        MARKDOWN: _plain,
        HTML: parse_html,
        CSV: parse_csv,
        PDF: parse_pdf,
        DOCX: parse_docx,
    }


def parse(data: bytes, *, content_type: str, max_pages: int, max_chars: int | None = None) -> ParsedDocument:
    """The document's structured text. Raises :class:`ParseError` for unreadable content and
    :class:`TooMuchText` for more than ``max_chars`` characters."""
    if content_type not in CONTENT_TYPES:
        raise UnsupportedMediaType(f"cannot parse {content_type}")
    limits = Limits(max_pages=max_pages, max_chars=max_chars)
    document = load_parsers()[content_type](data, limits)
    limits.check(len(document.text))
    if not document.text.replace(PAGE_BREAK, "").strip():
        raise ParseError("the file contains no text")
    return document
