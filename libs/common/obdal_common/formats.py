"""The file formats Obdal accepts, in one list.

The gateway decides an upload's content type from it (binary formats by their bytes, text
formats by their extension) and names it in its 415 errors; ingest picks a parser for each
type on it and refuses any other.
"""

from __future__ import annotations

from typing import Final

import msgspec

__all__ = [
    "CONTENT_TYPES",
    "CSV",
    "DOCX",
    "FORMATS",
    "HTML",
    "MARKDOWN",
    "PDF",
    "SUPPORTED",
    "TEXT",
    "TEXT_SUFFIXES",
    "FileFormat",
]

TEXT: Final = "text/plain"
MARKDOWN: Final = "text/markdown"
HTML: Final = "text/html"
CSV: Final = "text/csv"
PDF: Final = "application/pdf"
DOCX: Final = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


class FileFormat(msgspec.Struct, frozen=True):
    """One accepted format."""

    content_type: str
    label: str  # how an error message names it
    suffixes: tuple[str, ...]  # the file name extensions that name it ("" for none)
    text: bool  # UTF-8 text, told by its extension; otherwise told by its bytes (PDF, a DOCX archive)


FORMATS: Final = (
    FileFormat(PDF, "PDF", (".pdf",), text=False),
    FileFormat(DOCX, "Word (.docx)", (".docx",), text=False),
    FileFormat(HTML, "HTML", (".html", ".htm"), text=True),
    FileFormat(CSV, "CSV", (".csv",), text=True),
    FileFormat(MARKDOWN, "Markdown", (".md", ".markdown"), text=True),
    FileFormat(TEXT, "UTF-8 text", (".txt", ""), text=True),
)

CONTENT_TYPES: Final = frozenset(f.content_type for f in FORMATS)
"""Every accepted content type."""

TEXT_SUFFIXES: Final = {suffix: f.content_type for f in FORMATS if f.text for suffix in f.suffixes}
"""The content type a text file's extension names (lower case, with the dot)."""

SUPPORTED: Final = ", ".join(f.label for f in FORMATS[:-1]) + f" or {FORMATS[-1].label}"
"""The list for error messages: "PDF, Word (.docx), HTML, CSV, Markdown or UTF-8 text"."""
