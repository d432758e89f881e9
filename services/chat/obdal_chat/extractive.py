"""The offline answerer: a litellm provider that answers from the quoted passages, with citations.

Registered as ``obdal/extractive``. It needs no network and no model, costs 0, and is
deterministic. The pipeline has already decided what it may use: only passages over the
relevance threshold reach it, and small talk reaches it with none. So it:

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
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from litellm.llms.custom_llm import CustomLLM
from litellm.types.utils import GenericStreamingChunk, ModelResponse

from obdal_chat import smalltalk
from obdal_chat.grounding import is_summary_request
from obdal_chat.prompts import ParsedSource, parse_sources, persona
from obdal_common.retrieval.sparse import Bm25Encoder

__all__ = ["NOT_FOUND", "ExtractiveLLM", "extract_answer"]

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


def _question(messages: Sequence[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return str(message.get("content", ""))
    return ""


def _sentences(source: ParsedSource) -> list[str]:
    # Line breaks inside a sentence are layout, not content.
    return [s for s in (" ".join(piece.split()) for piece in _SENTENCE.split(source.text)) if s]


def _cite(sentences: Sequence[str], number: int) -> str:
    return f"{' '.join(sentences)} [{number}]"


def _summary(sources: Sequence[ParsedSource]) -> str:
    # The best-ranked passage's document, its passages in the order they stand in it.
    filename = sources[0].filename
    parts = sorted((s for s in sources if s.filename == filename), key=lambda s: s.part)
    points: list[str] = []
    seen: set[str] = set()
    for source in parts:
        for sentence in _sentences(source):
            # Consecutive passages overlap: a sentence already quoted is not a new point.
            if sentence not in seen and not sentence.startswith("#"):
                seen.add(sentence)
                section = source.section.rsplit(" > ", 1)[-1]
                label = f"{section}: " if section and section != filename else ""
                points.append(f"- {label}{_cite([sentence], source.number)}")
                break
        if len(points) == _MAX_SUMMARY_POINTS:
            break
    return f"Here is an overview of {filename}:\n" + "\n".join(points)


def _best_sentences(question: str, sources: Sequence[ParsedSource]) -> str:
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


def extract_answer(messages: list[dict[str, Any]]) -> str:
    """The answer text for ``messages`` built by :func:`obdal_chat.prompts.build_messages`."""
    question = _question(messages)
    talk = smalltalk.classify(question)
    sources = parse_sources(messages)
    if talk is not None and not sources:
        return smalltalk.reply(talk, persona=persona(messages))
    if not sources or not question.strip():
        return NOT_FOUND
    if is_summary_request(question):
        return _summary(sources)
    return _best_sentences(question, sources)


def _pieces(text: str) -> Iterator[str]:
    # Word-sized chunks, like a model's tokens, so streaming is visible.
    yield from _TOKEN.findall(text)


class ExtractiveLLM(CustomLLM):
    """litellm custom provider for ``obdal/extractive``."""

    # litellm documents async generators here although its stub says coroutine.
    async def astreaming(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> AsyncIterator[GenericStreamingChunk]:
        answer = extract_answer(kwargs["messages"])
        for piece in _pieces(answer):
            yield GenericStreamingChunk(
                text=piece, is_finished=False, finish_reason="", usage=None, index=0, tool_use=None
            )
        yield GenericStreamingChunk(
            text="", is_finished=True, finish_reason="stop", usage=None, index=0, tool_use=None
        )

    async def acompletion(self, *args: Any, **kwargs: Any) -> ModelResponse:
        model_response: ModelResponse = kwargs["model_response"]
        model_response.choices[0].message.content = extract_answer(kwargs["messages"])
        model_response.model = kwargs.get("model", "extractive")
        return model_response
