"""Which passages a turn may use: none for small talk, only relevant ones for a question.

Retrieval always returns the best passages it has, related or not; an answer built on
unrelated ones cited three of them under a refusal. Each hit's relevance (its cosine
similarity to the question, :class:`obdal_retrieval.Hit`) is compared with the
embedder's calibrated floor (:func:`obdal_retrieval.embedders.relevance_floor`):
passages under it are neither given to the model nor cited, for every model, and a turn
left with none is declined.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from obdal_chat import smalltalk
from obdal_common.schemas import TurnOutcome
from obdal_retrieval import Hit, HybridIndex

__all__ = ["Grounding", "ground", "is_summary_request"]

_SUMMARY = re.compile(
    r"^\s*(?:please\s+)?(?:summari[sz]e|sum up"
    r"|(?:give|show|tell) me (?:an? )?(?:overview|summary|gist|rundown)"
    r"|(?:an? )?(?:overview|summary) of|tl;?dr|what are the (?:key|main) points|what is in)\b",
    re.IGNORECASE,
)
# A summary covers a document, not the one passage that matches best: it gets this many times
# the passages of a question (a help-centre article is 5-8 passages).
_SUMMARY_DEPTH = 2


def is_summary_request(question: str) -> bool:
    """Whether ``question`` asks for an overview rather than for one fact."""
    return bool(_SUMMARY.match(question))


@dataclass(frozen=True, slots=True)
class Grounding:
    """The passages one turn may use, and what the turn is therefore going to be."""

    passages: list[Hit]
    outcome: TurnOutcome
    # How many hits retrieval found, relevant or not, and the best relevance among them
    # (traces and the answer bench report them).
    found: int = 0
    best_relevance: float = 0.0


async def ground(
    index: HybridIndex,
    app_id: str,
    question: str,
    *,
    context: Sequence[str] = (),
    limit: int,
    min_relevance: float,
    dense: list[float] | None = None,
) -> Grounding:
    """Retrieve for ``question`` (with the conversation's earlier ``context``) and keep what is relevant.

    ``dense``: the vector of what is searched (``question`` alone when there is no context), if
    the caller embedded it already."""
    if smalltalk.classify(question) is not None:
        return Grounding(passages=[], outcome="smalltalk")
    if is_summary_request(question):
        limit *= _SUMMARY_DEPTH
    hits = await index.search(app_id, "\n".join([*context, question]), limit=limit, dense=dense)
    passages = [hit for hit in hits if hit.relevance >= min_relevance]
    return Grounding(
        passages=passages,
        outcome="answered" if passages else "declined",
        found=len(hits),
        best_relevance=max((hit.relevance for hit in hits), default=0.0),
    )
