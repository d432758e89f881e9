"""Structure-following chunking: sections by heading and page, blocks kept whole, sized in tokens."""

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


def _blocks(text: str) -> list[tuple[str, int, str]]:
    """(heading path, page, block) triples; a block is a paragraph, list, table row or fenced code.

    Pages are separated by form feeds; the heading path carries over a page break.
    """
    path: list[str] = []
    out: list[tuple[str, int, str]] = []
    current: list[str] = []
    fenced = False
    page = 1

    def flush() -> None:
        if current and "".join(current).strip():
            out.append((" > ".join(path), page, "\n".join(current).strip()))
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


def chunk_text(text: str, *, target_tokens: int = 200, overlap_tokens: int = 30) -> list[TextChunk]:
    """Pack blocks into chunks of about ``target_tokens``, never crossing a section or a page.

    Consecutive chunks of one section share ``overlap_tokens`` of text so a
    sentence cut at a boundary is still whole in one of them.
    """
    chunks: list[TextChunk] = []
    section: tuple[str, int] | None = None
    body: list[str] = []

    def emit() -> None:
        if body and section is not None:
            chunks.append(TextChunk(heading=section[0], page=section[1], text="\n\n".join(body)))

    for block_heading, page, block in _blocks(text):
        if (block_heading, page) != section:
            emit()
            section, body = (block_heading, page), []
        for piece in _split_long(block, target_tokens) if estimate_tokens(block) > target_tokens else [block]:
            if body and estimate_tokens("\n\n".join([*body, piece])) > target_tokens:
                emit()
                overlap = _tail(body[-1], overlap_tokens)
                body = [overlap] if overlap else []
            body.append(piece)
    emit()
    return chunks
