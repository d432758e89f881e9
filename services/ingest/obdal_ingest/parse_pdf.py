"""PDF: the text of each page (pypdf), pages kept apart so chunks know their page."""

from __future__ import annotations

import io

from pypdf import PdfReader
from pypdf.errors import PyPdfError

from obdal_ingest.parsing import PAGE_BREAK, Limits, ParsedDocument, ParseError

__all__ = ["parse_pdf"]


def parse_pdf(data: bytes, limits: Limits) -> ParsedDocument:
    """Text per page; the page limit is checked before any page is read, the text limit after each."""
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ParseError("the PDF is password-protected")
        count = len(reader.pages)
        if count > limits.max_pages:
            raise ParseError(f"the PDF has {count} pages; the limit is {limits.max_pages} (OBDAL_MAX_PAGES)")
        pages: list[str] = []
        chars = 0
        for page in reader.pages:
            pages.append(page.extract_text() or "")
            chars += len(pages[-1])
            limits.check(chars)
        title = str(reader.metadata.title or "") if reader.metadata is not None else ""
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        # pypdf raises these (not only PyPdfError) on damaged files.
        raise ParseError(f"the PDF is damaged or unreadable: {type(exc).__name__}: {exc}") from None
    if not any(p.strip() for p in pages):
        raise ParseError("the PDF has no extractable text (scanned images need OCR, which is not supported)")
    text = PAGE_BREAK.join(p.replace(PAGE_BREAK, "\n") for p in pages)
    return ParsedDocument(text=text, title=title.strip(), pages=count)
