"""A crawled web page's main content as Markdown, plus what the crawler needs from its markup.

This runs in the sandboxed parser child (:class:`~obdal_ingest.parser_pool.ParserPool`):
trafilatura, lxml and Lexbor are a large body of C and Python fed whatever HTML a website
serves, so a page that hangs or blows up the parser costs that child, never the worker.
The content is trafilatura's main text (navigation, headers, footers and cookie banners
dropped), written in the chunker's convention: ``#`` headings, blank lines between blocks.
"""

from __future__ import annotations

import codecs
import contextlib
import re
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from urllib.parse import urldefrag, urljoin, urlsplit

from selectolax.lexbor import LexborHTMLParser

from obdal_ingest.parse_html import parse_html
from obdal_ingest.parsing import Limits

__all__ = ["WebPage", "extract_webpage", "load_extractor"]

# Where a page declares its encoding: <meta charset=...> or the http-equiv form, early in the head.
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_CHARSET_WINDOW = 4096
_FENCE = "```"


@dataclass(frozen=True, slots=True)
class WebPage:
    title: str
    markdown: str  # the main content; "" when none was found
    canonical: str | None  # absolute <link rel=canonical>
    links: tuple[str, ...]  # absolute http(s) hrefs, fragments stripped, in document order, deduped
    noindex: bool
    nofollow: bool


@cache
def load_extractor() -> ModuleType:
    """trafilatura, imported once in the parser child (a second of imports, not on the first page)."""
    import trafilatura

    return trafilatura


def _decode(html: bytes) -> str:
    declared = _CHARSET.search(html[:_CHARSET_WINDOW])
    encoding = "utf-8"
    if declared is not None:
        # An unknown label is read as UTF-8, like a browser falls back.
        with contextlib.suppress(LookupError):
            encoding = codecs.lookup(declared.group(1).decode("ascii")).name
    # utf-8-sig: a byte-order mark is not text.
    return html.decode("utf-8-sig" if encoding == "utf-8" else encoding, errors="replace")


def _blocks(markdown: str) -> str:
    # trafilatura puts list items and table rows on consecutive lines; the chunker splits on blank
    # lines, so each line becomes its block. Code fences stay whole.
    blocks: list[str] = []
    fence: list[str] | None = None
    for line in markdown.replace("\r\n", "\n").split("\n"):
        if fence is not None:
            fence.append(line)
            if line.strip().startswith(_FENCE):
                blocks.append("\n".join(fence))
                fence = None
        elif line.strip().startswith(_FENCE):
            fence = [line]
        elif line.strip():
            blocks.append(line.rstrip())
    if fence is not None:
        blocks.append("\n".join(fence))
    return "\n\n".join(blocks)


def _truncate(markdown: str, max_chars: int) -> str:
    if len(markdown) <= max_chars:
        return markdown
    cut = markdown.rfind("\n\n", 0, max_chars + 1)  # end on a block boundary when there is one
    return markdown[: cut if cut > 0 else max_chars]


def _http(url: str) -> bool:
    try:
        return urlsplit(url).scheme in ("http", "https")
    except ValueError:
        return False


def extract_webpage(html: bytes, *, url: str, max_chars: int) -> WebPage:
    """The page's title, main content (at most ``max_chars``), canonical URL, links and robots meta."""
    text = _decode(html)
    tree = LexborHTMLParser(text)
    base_node = tree.css_first("base[href]")
    base = urljoin(url, (base_node.attributes.get("href") or "").strip()) if base_node is not None else url
    title_node = tree.css_first("title")
    title = " ".join(title_node.text().split()) if title_node is not None else ""

    canonical: str | None = None
    for node in tree.css("link[rel][href]"):
        rels = (node.attributes.get("rel") or "").lower().split()
        href = (node.attributes.get("href") or "").strip()
        if "canonical" in rels and href:
            absolute = urldefrag(urljoin(base, href)).url
            canonical = absolute if _http(absolute) else None
            break

    directives: set[str] = set()
    for node in tree.css("meta[name][content]"):
        if (node.attributes.get("name") or "").strip().lower() == "robots":
            directives.update(d.strip() for d in (node.attributes.get("content") or "").lower().split(","))
    noindex = bool(directives & {"noindex", "none"})
    nofollow = bool(directives & {"nofollow", "none"})

    links: dict[str, None] = {}  # ordered set
    for node in tree.css("a[href]"):
        href = (node.attributes.get("href") or "").strip()
        if not href or href.startswith("#"):
            continue
        try:
            absolute = urldefrag(urljoin(base, href)).url
        except ValueError:
            continue  # a malformed href (bad port, bad IPv6 literal) links nowhere
        if _http(absolute):
            links.setdefault(absolute)

    extracted = load_extractor().extract(
        text,
        url=url,
        output_format="markdown",
        include_comments=False,
        include_tables=True,
        include_images=False,
        include_links=False,
        with_metadata=False,
    )
    # No main content found: the page's own text, chrome still dropped (the uploaded-HTML parser).
    markdown = _blocks(extracted) if extracted else parse_html(text.encode(), Limits(max_pages=1)).text
    return WebPage(
        title=title,
        markdown=_truncate(markdown, max_chars),
        canonical=canonical,
        links=tuple(links),
        noindex=noindex,
        nofollow=nofollow,
    )
