"""Structure-following chunking: sections by heading and page, blocks kept whole, sized in tokens.

Tiny sections are packed together. A chunk per section, however small, made a 33 KB Word file
11,900 chunks (issue 15, finding 7); 11,900 one-line headed sections (101 KB as python-docx
writes them) did the same here, each chunk costing an embedding like a full one: ~22 minutes of
a worker at 9 chunks/s. Now consecutive sections of a page that are each under a tenth of the
target share chunks up to the target, their headings kept as lines of the text, under the
heading path they share: the same sections make 567 chunks. Any larger section keeps a chunk of
its own. (Packing every section under a quarter of the target made 627 but merged help-centre
sections of 25-50 tokens, so a question's passage was diluted under the relevance floor: the
product page's summary and the demo's warranty question were declined.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["TextChunk", "chunk_text", "estimate_tokens"]

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True, slots=True)
class TextChunk:
    heading: str
    text: str
    page: int = 1


def estimate_tokens(text: str) -> int:
    """Roughly the BPE token count of English text (~0.75 words per token)."""
    return max(1, round(len(text.split()) * 4 / 3))


def _blocks(text: str) -> list[tuple[tuple[str, ...], int, str]]:
    """(heading path, page, block) triples; a block is a paragraph, list, table row or fenced code.

    Pages are separated by form feeds; the heading path carries over a page break.
    """
    path: list[str] = []
    out: list[tuple[tuple[str, ...], int, str]] = []
    current: list[str] = []
    fenced = False
    page = 1

    def flush() -> None:
        if current and "".join(current).strip():
            out.append((tuple(path), page, "\n".join(current).strip()))
        current.clear()

    for line in text.split("\n"):
        if "\f" in line:
            before, *after = line.split("\f")
            current.append(before)
            for rest in after:
                flush()
                page += 1
                current.append(rest)
            continue
        if line.lstrip().startswith("```"):
            fenced = not fenced
        heading = None if fenced else _HEADING.match(line)
        if heading:
            flush()
            level = len(heading.group(1))
            path[:] = [*path[: level - 1], heading.group(2)]
        elif not line.strip() and not fenced:
            flush()
        else:
            current.append(line)
    flush()
    return out


def _sections(text: str) -> list[tuple[tuple[str, ...], int, list[str]]]:
    """(heading path, page, blocks) of each run of blocks under one heading on one page."""
    out: list[tuple[tuple[str, ...], int, list[str]]] = []
    for path, page, block in _blocks(text):
        if out and out[-1][:2] == (path, page):
            out[-1][2].append(block)
        else:
            out.append((path, page, [block]))
    return out


def _split_long(block: str, limit: int) -> list[str]:
    """Split a block larger than ``limit`` tokens at line (list item, row), sentence, then word boundaries."""
    lines = [line for line in block.split("\n") if line.strip()]
    if len(lines) > 1:
        return [piece for line in lines for piece in _split_long(line, limit)]
    if estimate_tokens(block) <= limit:
        return [block]
    pieces: list[str] = []
    current = ""
    for sentence in _SENTENCE.split(block):
        candidate = f"{current} {sentence}".strip()
        if estimate_tokens(candidate) <= limit:
            current = candidate
            continue
        if current:
            pieces.append(current)
        words = sentence.split()
        step = max(1, limit * 3 // 4)
        while estimate_tokens(" ".join(words)) > limit:
            pieces.append(" ".join(words[:step]))
            words = words[step:]
        current = " ".join(words)
    if current:
        pieces.append(current)
    return pieces


def _tail(text: str, tokens: int) -> str:
    if tokens <= 0:
        return ""
    words = text.split()
    return " ".join(words[-max(1, tokens * 3 // 4) :])


_Section = tuple[tuple[str, ...], list[str]]  # a heading path and its blocks in one chunk


def _render(sections: list[_Section]) -> tuple[str, str]:
    """(heading, text) of a chunk: the heading path its sections share, and their blocks, each
    section under the rest of its own path."""
    common = list(sections[0][0])
    for path, _ in sections[1:]:
        while tuple(common) != path[: len(common)]:
            common.pop()
    parts: list[str] = []
    for path, blocks in sections:
        if len(path) > len(common):
            parts.append(" > ".join(path[len(common) :]))
        parts.extend(blocks)
    return " > ".join(common), "\n\n".join(parts)


def _with(sections: list[_Section], path: tuple[str, ...], piece: str) -> list[_Section]:
    if sections and sections[-1][0] == path:
        return [*sections[:-1], (path, [*sections[-1][1], piece])]
    return [*sections, (path, [piece])]


def chunk_text(text: str, *, target_tokens: int = 200, overlap_tokens: int = 30) -> list[TextChunk]:
    """Pack blocks into chunks of about ``target_tokens``, never crossing a page, and crossing a
    section only to pack tiny ones: consecutive sections of a page each under a tenth of the
    target share chunks while they fit.

    Consecutive chunks of one section share ``overlap_tokens`` of text so a
    sentence cut at a boundary is still whole in one of them.
    """
    chunks: list[TextChunk] = []
    tiny = max(1, target_tokens // 10)
    page = 0
    packing = False  # the open chunk holds only tiny sections
    sections: list[_Section] = []  # what the open chunk holds

    def emit() -> None:
        if sections:
            heading, body = _render(sections)
            chunks.append(TextChunk(heading=heading, page=page, text=body))

    for path, section_page, blocks in _sections(text):
        is_tiny = estimate_tokens("\n\n".join(blocks)) < tiny
        if sections and (section_page != page or not (packing and is_tiny)):
            emit()
            sections = []
        if not sections:
            packing = is_tiny
        page = section_page
        for block in blocks:
            for piece in (
                _split_long(block, target_tokens) if estimate_tokens(block) > target_tokens else [block]
            ):
                if sections and estimate_tokens(_render(_with(sections, path, piece))[1]) > target_tokens:
                    last_path, last_blocks = sections[-1]
                    emit()
                    overlap = _tail(last_blocks[-1], overlap_tokens) if last_path == path else ""
                    sections = [(path, [overlap])] if overlap else []
                sections = _with(sections, path, piece)
    emit()
    return chunks
