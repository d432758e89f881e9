"""HTML: the page's main text only (selectolax/Lexbor); scripts, navigation and chrome dropped."""

from __future__ import annotations

import re

from selectolax.lexbor import LexborHTMLParser, LexborNode

from obdal_ingest.parsing import Limits, ParsedDocument, decode_text
from obdal_ingest.table_rows import record_text

__all__ = ["parse_html"]

# Never content: code, styling, and the page's navigation and chrome.
_DROP = (
    "script, style, noscript, template, svg, iframe, form, nav, header, footer, aside, "
    "[role=navigation], [role=banner], [role=contentinfo], [aria-hidden=true]"
)
_MAIN = ("main", "article", "[role=main]", "body")
_BLOCKS = "h1, h2, h3, h4, h5, h6, p, li, tr, pre, blockquote, dt, dd, figcaption"
_CELLS = "th, td"
_SPACE_BEFORE_PUNCT = re.compile(r" ([.,;:!?)])")


def _text(node: LexborNode) -> str:
    # Inline tags get a separator so words never glue together; undo it before punctuation.
    return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(node.text(separator=" ").split()))


def _has_block_ancestor(node: LexborNode, root: LexborNode, blocks: set[str]) -> bool:
    parent = node.parent
    while parent is not None and parent is not root and parent.tag != root.tag:
        if parent.tag in blocks:
            return True
        parent = parent.parent
    return False


def parse_html(data: bytes, _: Limits) -> ParsedDocument:
    """Headings become ``#`` lines, table rows ``Header: value`` blocks, other blocks paragraphs."""
    tree = LexborHTMLParser(decode_text(data))
    title_node = tree.css_first("title")
    title = _text(title_node) if title_node is not None else ""
    for node in tree.css(_DROP):
        node.decompose()
    root = next((n for n in (tree.css_first(s) for s in _MAIN) if n is not None), tree.root)
    if root is None:
        return ParsedDocument(text="", title=title)
    tags = {t.strip() for t in _BLOCKS.split(",")}
    blocks: list[str] = []
    headers: list[str] = []
    for node in root.css(_BLOCKS):
        if _has_block_ancestor(node, root, tags):
            continue  # its text is already part of the enclosing block
        if node.tag == "tr":
            cells = [_text(c) for c in node.css(_CELLS)]
            if node.css_first("td") is None:
                headers = cells
            else:
                blocks.append(record_text(headers, cells))
            continue
        text = _text(node)
        if not text:
            continue
        if node.tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            text = f"{'#' * int(node.tag[1])} {text}"
        elif node.tag == "li":
            text = f"- {text}"
        blocks.append(text)
    if not blocks:
        blocks.append(_text(root))
    return ParsedDocument(text="\n\n".join(b for b in blocks if b), title=title)
