"""CSV: one block per record, each value with its column header (stdlib csv)."""

from __future__ import annotations

import csv
import io

from obdal_ingest.parsing import Limits, ParsedDocument, ParseError, decode_text
from obdal_ingest.table_rows import record_text

__all__ = ["parse_csv"]

_SNIFF_CHARS = 16384


def parse_csv(data: bytes, _: Limits) -> ParsedDocument:
    """The first row names the columns; every other row becomes ``Header: value`` lines."""
    text = decode_text(data)
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:_SNIFF_CHARS], ",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = list(csv.reader(io.StringIO(text), dialect))
    except csv.Error as exc:
        raise ParseError(f"the CSV file is malformed: {exc}") from None
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise ParseError("the CSV file needs a header row and at least one record")
    headers, *records = rows
    return ParsedDocument(text="\n\n".join(filter(None, (record_text(headers, r) for r in records))))
