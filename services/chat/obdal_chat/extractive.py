"""The offline answerer (``obdal/extractive``): answers from the passages, with citations.

The generator gives it the turn's question, its grounded passages and the app's persona
as they are, not as a prompt to parse back (:meth:`obdal_chat.generation.Generator.stream`).
It needs no network and no model, costs 0, and is deterministic. The pipeline has already
decided what it may use: only passages over the relevance threshold reach it, and small
talk reaches it with none. So it:

- replies to small talk in the app's persona (:mod:`obdal_chat.smalltalk`);
- with no passages, declines (:data:`NOT_FOUND`);
- for "summarize / give me an overview of …", gives the key sentence of each passage of
  the best-matching document, in document order;
- for any other question, gives the sentences that best match it (at most three, each
  scoring at least 0.3 of the best one), in their passage's order.

Sentences are scored by the question's stemmed terms they share, each weighted by how rare
it is among the candidate sentences, with a bonus when the question asks for a quantity
("how long", "how much") and the sentence has a number. Embedding each sentence instead
put the fact in fewer answers (58 of 71, its best variant, against 66) and cost ~100 ms more
per question. On the
labelled help-centre set (bench/answers.py) the fact is in 90.4% of answers to answerable
questions and 93.3% of unanswerable ones are declined (docs/chat.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncGenerator, Sequence
from typing import NamedTuple

from obdal_chat import smalltalk
from obdal_chat.grounding import is_summary_request
from obdal_retrieval import Hit
from obdal_retrieval.sparse import Bm25Encoder

__all__ = ["NOT_FOUND", "extract_answer", "stream_answer"]

NOT_FOUND = (
    "I could not find an answer to that in the documents I have. "
    "Could you rephrase the question, or ask about something they cover?"
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n{2,}|\n(?=[-*#\d])")
_TOKEN = re.compile(r"\S+\s*")
_QUANTITY = re.compile(
    r"\b(?:how (?:long|much|many|soon|fast|often|old)|when|what time"
    r"|what (?:is|are) the (?:cost|fee|price))\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\d")
_MAX_SUMMARY_POINTS = 8
# At most this many sentences are quoted, each scoring at least this share of the best one.
_MAX_SENTENCES = 3
_SHARE_OF_BEST = 0.3
# A question asking for a quantity prefers sentences with a number by this factor.
_QUANTITY_BOOST = 1.25

_encoder: Bm25Encoder | None = None


def _terms(text: str) -> set[int]:
    global _encoder
    if _encoder is None:
        _encoder = Bm25Encoder()
    return set(_encoder.query(text)[0])


class _Source(NamedTuple):
    number: int  # its citation, [1] for the best-ranked passage, as the prompt numbers them
    hit: Hit


def _sentences(source: _Source) -> list[str]:
    # Line breaks inside a sentence are layout, not content.
    return [s for s in (" ".join(piece.split()) for piece in _SENTENCE.split(source.hit.text)) if s]


def _cite(sentences: Sequence[str], number: int) -> str:
    return f"{' '.join(sentences)} [{number}]"


def _summary(sources: Sequence[_Source]) -> str:
    # The best-ranked passage's document, its passages in the order they stand in it.
    filename = sources[0].hit.filename
    parts = sorted((s for s in sources if s.hit.filename == filename), key=lambda s: s.hit.position)
    points: list[str] = []
    seen: set[str] = set()
    for source in parts:
        for sentence in _sentences(source):
            # Consecutive passages overlap: a sentence already quoted is not a new point.
            if sentence not in seen and not sentence.startswith("#"):
                seen.add(sentence)
                section = source.hit.heading.rsplit(" > ", 1)[-1]
                label = f"{section}: " if section and section != filename else ""
                points.append(f"- {label}{_cite([sentence], source.number)}")
                break
        if len(points) == _MAX_SUMMARY_POINTS:
            break
    return f"Here is an overview of {filename}:\n" + "\n".join(points)


def _best_sentences(question: str, sources: Sequence[_Source]) -> str:
    wanted = _terms(question)
    quantity = bool(_QUANTITY.search(question))
    sentences = [_sentences(source) for source in sources]
    terms = {
        (i, j): _terms(sentence) for i, group in enumerate(sentences) for j, sentence in enumerate(group)
    }
    if not terms:
        return NOT_FOUND
    frequency = {term: sum(term in found for found in terms.values()) for term in wanted}
    weight = {term: math.log(1 + len(terms) / count) for term, count in frequency.items() if count}

    def score(place: tuple[int, int]) -> float:
        value = sum(weight.get(term, 0.0) for term in wanted & terms[place])
        if value and quantity and _NUMBER.search(sentences[place[0]][place[1]]):
            value *= _QUANTITY_BOOST
        return value

    scores = {place: score(place) for place in terms}
    # Best first; ties go to the better-ranked passage, then to the earlier sentence.
    ranked = sorted(terms, key=lambda place: (-scores[place], place))
    best = scores[ranked[0]]
    places: list[tuple[int, int]] = []
    quoted: set[str] = set()
    for place in ranked:
        if len(places) == _MAX_SENTENCES or scores[place] < best * _SHARE_OF_BEST:
            break
        sentence = sentences[place[0]][place[1]]
        if sentence not in quoted:  # overlapping passages repeat sentences
            quoted.add(sentence)
            places.append(place)
        if (
            best == 0
        ):  # relevant by meaning (the pipeline's floor) but sharing no word: the best passage's lead
            break
    # Quoted in the order they stand in each passage, best passage first, each with its citation.
    lines = []
    for i in sorted({i for i, _ in places}):
        picked = [sentences[i][j] for k, j in sorted(places) if k == i]
        lines.append(_cite(picked, sources[i].number))
    return "\n".join(lines)


def extract_answer(question: str, passages: Sequence[Hit], *, persona: str) -> str:
    """The answer to ``question`` from ``passages`` (best first, cited from [1]), in the app's ``persona``."""
    sources = [_Source(number, hit) for number, hit in enumerate(passages, start=1)]
    talk = smalltalk.classify(question)
    if talk is not None and not sources:
        return smalltalk.reply(talk, persona=persona)
    if not sources or not question.strip():
        return NOT_FOUND
    if is_summary_request(question):
        return _summary(sources)
    return _best_sentences(question, sources)


async def stream_answer(question: str, passages: Sequence[Hit], *, persona: str) -> AsyncGenerator[str, None]:
    """:func:`extract_answer` in word-sized pieces, like a model's tokens, so streaming is visible."""
    for piece in _TOKEN.findall(extract_answer(question, passages, persona=persona)):
        yield piece
