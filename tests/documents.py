"""Real documents of every supported format, built with the libraries that write them."""

from __future__ import annotations

import csv
import io

import docx
from fpdf import FPDF

FILLER = "Our help center explains orders, deliveries, invoices and accounts in plain words. "


def pdf(pages: list[str], *, title: str = "") -> bytes:
    """A PDF with one page per text (fpdf2)."""
    document = FPDF()
    if title:
        document.set_title(title)
    document.set_font("Helvetica", size=11)
    for text in pages:
        document.add_page()
        document.multi_cell(0, 6, text)
    return bytes(document.output())


def word(*, title: str, sections: dict[str, list[str]], table: list[list[str]] | None = None) -> bytes:
    """A .docx with a heading per section, its paragraphs, and an optional table (python-docx)."""
    document = docx.Document()
    document.core_properties.title = title
    for heading, paragraphs in sections.items():
        document.add_heading(heading, level=1)
        for paragraph in paragraphs:
            document.add_paragraph(paragraph)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def html(*, title: str, main: str, chrome: str) -> bytes:
    """A web page: ``main`` inside <main>, ``chrome`` in navigation, footer and a script."""
    return f"""<!DOCTYPE html>
<html><head><title>{title}</title><script>var tracking = "{chrome}";</script>
<style>body {{ color: black }}</style></head>
<body><nav><a href="/">{chrome}</a></nav><header>{chrome}</header>
<main>{main}</main>
<footer>{chrome}</footer></body></html>""".encode()


def table_csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode()
