"""The offline answerer: a litellm provider that quotes the best passages, with citations.

Registered as ``obdal/extractive``. It needs no network and no model, costs 0,
and is deterministic: it picks the sentences of the quoted sources that share
the most (stemmed, stop-word-free) terms with the question and streams them
with their source numbers. With nothing relevant it says so.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

from litellm.llms.custom_llm import CustomLLM
from litellm.types.utils import GenericStreamingChunk, ModelResponse

from obdal_chat.prompts import ParsedSource, parse_sources
from obdal_common.retrieval.sparse import Bm25Encoder

__all__ = ["NOT_FOUND", "ExtractiveLLM", "extract_answer"]

NOT_FOUND = (
    "I could not find an answer to that in the documents I have. "
    "Could you rephrase the question, or ask about something they cover?"
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n{2,}|\n(?=[-*#\d])")
_MAX_SENTENCES = 3
_TOKEN = re.compile(r"\S+\s*")

_encoder: Bm25Encoder | None = None


def _terms(text: str) -> set[int]:
    global _encoder
    if _encoder is None:
        _encoder = Bm25Encoder()
    return set(_encoder.query(text)[0])


def _question(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return str(message.get("content", ""))
    return ""


def extract_answer(messages: list[dict[str, Any]]) -> str:
    """The answer text for ``messages`` built by :func:`obdal_chat.prompts.build_messages`."""
    wanted = _terms(_question(messages))
    scored: list[tuple[float, int, ParsedSource, str]] = []
    for source in parse_sources(messages):
        # Line breaks inside a sentence are layout, not content.
        for order, sentence in enumerate(" ".join(s.split()) for s in _SENTENCE.split(source.text)):
            if not sentence:
                continue
            overlap = len(wanted & _terms(sentence))
            if overlap:
                # Prefer more shared terms, then earlier sources (better ranked), then order.
                scored.append((overlap, -source.number * 1000 - order, source, sentence))
    if not wanted or not scored:
        return NOT_FOUND
    best = sorted(scored, key=lambda item: (item[0], item[1]), reverse=True)[:_MAX_SENTENCES]
    lines = [f"{sentence} [{source.number}]" for _, _, source, sentence in best]
    return "From the documents:\n" + "\n".join(lines)


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
