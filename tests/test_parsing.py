"""Parsers and chunking on real files: structure, pages and table rows survive; bad files fail clearly."""

from __future__ import annotations

import zipfile
from io import BytesIO

import pytest

from obdal_common.formats import CONTENT_TYPES, CSV, DOCX, HTML, PDF
from obdal_ingest.chunking import chunk_text
from obdal_ingest.parser_pool import ParserPool
from obdal_ingest.parsing import ParseError, load_parsers, parse
from tests import documents


def test_every_accepted_format_has_a_parser() -> None:
    assert set(load_parsers()) == CONTENT_TYPES  # the gateway's list (obdal_common.formats), no other


def test_pdf_keeps_page_numbers() -> None:
    data = documents.pdf(["Cover page.", "The Zentrix router blinks amber on failure."], title="Router guide")
    parsed = parse(data, content_type=PDF, max_pages=10)
    assert parsed.title == "Router guide"
    assert parsed.pages == 2
    chunks = chunk_text(parsed.text, target_tokens=100, overlap_tokens=10)
    assert [(c.page, "Zentrix" in c.text) for c in chunks] == [(1, False), (2, True)]


def test_pdf_page_limit_and_damage_fail_with_a_reason() -> None:
    with pytest.raises(ParseError, match="3 pages; the limit is 2"):
        parse(documents.pdf(["a", "b", "c"]), content_type=PDF, max_pages=2)
    with pytest.raises(ParseError, match="damaged"):
        parse(b"%PDF-1.7\n1 0 obj << /Type /Catalog", content_type=PDF, max_pages=2)


def test_docx_headings_lists_and_table_rows() -> None:
    data = documents.word(
        title="Handbook",
        sections={"Returns": [documents.FILLER * 3], "Plans": ["Compare them below."]},
        table=[["Plan", "Price"], ["Gold", "9 EUR"], ["Silver", "5 EUR"]],
    )
    parsed = parse(data, content_type=DOCX, max_pages=10)
    assert parsed.title == "Handbook"
    chunks = chunk_text(parsed.text, target_tokens=100, overlap_tokens=10)
    assert [c.heading for c in chunks] == ["Returns", "Plans"]
    # Each table row is a block that carries its column headers.
    assert "Plan: Gold\nPrice: 9 EUR" in chunks[1].text
    assert "Plan: Silver\nPrice: 5 EUR" in chunks[1].text


def test_docx_that_is_not_a_word_document_fails() -> None:
    archive = BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("word/document.xml", "<not-closed")
    with pytest.raises(ParseError, match="Word document"):
        parse(archive.getvalue(), content_type=DOCX, max_pages=10)


def test_html_keeps_main_text_only() -> None:
    data = documents.html(
        title="FAQ",
        main="<h1>Billing</h1><p>Invoices are sent on the <b>first</b> day.</p>"
        "<table><tr><th>Plan</th><th>Seats</th></tr><tr><td>Team</td><td>10</td></tr></table>",
        chrome="Home About Careers",
    )
    parsed = parse(data, content_type=HTML, max_pages=10)
    assert parsed.title == "FAQ"
    assert "Careers" not in parsed.text
    assert "tracking" not in parsed.text
    assert "color" not in parsed.text
    (chunk,) = chunk_text(parsed.text)
    assert chunk.heading == "Billing"
    assert "Invoices are sent on the first day." in chunk.text
    assert "Plan: Team\nSeats: 10" in chunk.text


def test_csv_is_one_block_per_record_with_headers() -> None:
    data = documents.table_csv(
        [["question", "answer"], ["How do I pay?", "By card"], ["Refunds?", "45 days"]]
    )
    parsed = parse(data, content_type=CSV, max_pages=10)
    assert parsed.text.split("\n\n") == [
        "question: How do I pay?\nanswer: By card",
        "question: Refunds?\nanswer: 45 days",
    ]
    with pytest.raises(ParseError, match="header row"):
        parse(b"only,a,header\n", content_type=CSV, max_pages=10)


def test_long_table_is_split_between_rows_not_inside_them() -> None:
    rows = "\n\n".join(f"Item: product {n}\nPrice: {n} EUR" for n in range(60))
    chunks = chunk_text(rows, target_tokens=40, overlap_tokens=0)
    assert len(chunks) > 3
    for chunk in chunks:
        assert all(block.startswith("Item:") and "\nPrice:" in block for block in chunk.text.split("\n\n"))


async def test_parser_pool_bounds_time_and_recovers() -> None:
    pool = ParserPool(timeout_s=0.05, memory_mb=1024)
    try:
        big = documents.pdf([documents.FILLER * 40] * 30)
        with pytest.raises(ParseError, match="longer than"):
            await pool.extract(big, content_type=PDF, max_pages=100, target_tokens=200, overlap_tokens=30)
        pool._timeout_s = 60  # the replacement child parses normally
        small = await pool.extract(
            documents.pdf(["Back to work."]),
            content_type=PDF,
            max_pages=5,
            target_tokens=200,
            overlap_tokens=30,
        )
        assert small.chunks[0].text == "Back to work."
    finally:
        pool.close()
