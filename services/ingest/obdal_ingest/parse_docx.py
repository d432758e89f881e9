"""Word (.docx): headings, paragraphs, list items and tables, in document order (python-docx)."""

from __future__ import annotations

import io
import zipfile

import docx
from docx.opc.exceptions import OpcError
from docx.table import Table
from docx.text.paragraph import Paragraph

from obdal_ingest.parsing import Limits, ParsedDocument, ParseError
from obdal_ingest.table_rows import record_text

__all__ = ["parse_docx"]

# A .docx is a ZIP archive: a small upload can expand to gigabytes (a decompression bomb).
# Checked from the archive's directory before anything is inflated (zipfile never inflates
# a member past its declared size). Real documents' XML compresses 5-20 times; bombs ~1000.
MAX_EXPANDED_BYTES = 256 * 1024 * 1024
MAX_EXPANSION_RATIO = 100
_ALWAYS_ALLOWED_BYTES = 16 * 1024 * 1024  # below this any ratio is harmless


def _check_expansion(data: bytes) -> None:
    expanded = sum(info.file_size for info in zipfile.ZipFile(io.BytesIO(data)).infolist())
    limit = min(MAX_EXPANDED_BYTES, max(_ALWAYS_ALLOWED_BYTES, MAX_EXPANSION_RATIO * len(data)))
    if expanded > limit:
        raise ParseError(
            f"the Word document would expand to {expanded // 2**20} MB from {len(data) // 1024} KB, "
            f"more than the {limit // 2**20} MB allowed (a decompression bomb?)"
        )


def _paragraph(paragraph: Paragraph, styles: dict[str | None, str]) -> tuple[str, bool]:
    """(Markdown line, is a list item) of one paragraph; ``styles`` caches style names by id."""
    text = paragraph.text.strip()
    style_id = paragraph._p.style
    if style_id not in styles:
        # python-docx searches every style of the document on each lookup: ~2.5 ms a paragraph,
        # 38 s for 11,900 headings over a line each (measured). Once per style id is enough.
        found = paragraph.style
        styles[style_id] = (found.name or "") if found is not None else ""
    style = styles[style_id]
    if style.startswith("Heading") and style[7:].strip().isdigit():
        return f"{'#' * min(6, int(style[7:]))} {text}", False
    if style == "Title":
        return f"# {text}", False
    is_item = style.startswith("List") or (
        paragraph._p.pPr is not None and paragraph._p.pPr.numPr is not None
    )
    return (f"- {text}", True) if is_item else (text, False)


def _table(table: Table) -> list[str]:
    rows = [[cell.text.strip() for cell in row.cells] for row in table.rows]
    if not rows:
        return []
    headers, *records = rows
    return [record_text(headers, record) for record in records] or [" | ".join(headers)]


def parse_docx(data: bytes, limits: Limits) -> ParsedDocument:
    """Blank lines between blocks; consecutive list items stay one block; the text limit is
    checked as blocks are read."""
    try:
        _check_expansion(data)
        document = docx.Document(io.BytesIO(data))
        title = (document.core_properties.title or "").strip()
        blocks: list[str] = []
        in_list = False
        chars = 0
        styles: dict[str | None, str] = {}
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                rows = _table(item)
                blocks.extend(rows)
                chars += sum(len(row) + 2 for row in rows)
                limits.check(chars)
                in_list = False
                continue
            line, is_item = _paragraph(item, styles)
            if not line.strip("#- "):
                continue
            if is_item and in_list:
                blocks[-1] += "\n" + line
            else:
                blocks.append(line)
            in_list = is_item
            chars += len(line) + 2
            limits.check(chars)
    except (OpcError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ParseError(f"the Word document is damaged or unreadable: {type(exc).__name__}: {exc}") from None
    return ParsedDocument(text="\n\n".join(blocks), title=title)
