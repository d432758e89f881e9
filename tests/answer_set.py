"""The labelled help-centre set (tests/data/helpcentre): index it, ask it, judge the answers.

Shared by tests/test_answers.py (which holds the offline answerer to its targets) and
bench/answers.py (which prints the table in docs/chat.md), so both judge the same way
through the product's own chunker, index, grounding and answerer.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from obdal_chat.extractive import NOT_FOUND, extract_answer
from obdal_chat.grounding import ground
from obdal_chat.settings import DEFAULT_SYSTEM_PROMPT
from obdal_ingest.chunking import chunk_text
from obdal_retrieval import Chunk, HybridIndex

__all__ = ["HELPCENTRE", "Judged", "Question", "Report", "ask_all", "index_helpcentre", "load_questions"]

HELPCENTRE = Path(__file__).resolve().parent / "data" / "helpcentre"
APP = "app_helpcentre"


@dataclass(frozen=True, slots=True)
class Question:
    text: str
    kind: str  # answerable | unanswerable | smalltalk
    facts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Judged:
    question: Question
    answer: str
    outcome: str
    sources: int
    top_relevance: float
    verdict: str  # correct | wrong | declined


@dataclass(slots=True)
class Report:
    judged: list[Judged] = field(default_factory=list)

    def share(self, kind: str, verdict: str) -> float:
        rows = [j for j in self.judged if j.question.kind == kind]
        return sum(j.verdict == verdict for j in rows) / len(rows) if rows else 0.0

    def counts(self, kind: str) -> Counter[str]:
        return Counter(j.verdict for j in self.judged if j.question.kind == kind)

    def failures(self) -> list[Judged]:
        return [j for j in self.judged if j.verdict != "correct"]


def load_questions(path: Path = HELPCENTRE / "questions.json") -> list[Question]:
    data = json.loads(path.read_text())
    return [
        *(Question(q["q"], "answerable", tuple(q["fact"])) for q in data["answerable"]),
        *(Question(q, "unanswerable") for q in data["unanswerable"]),
        *(Question(q, "smalltalk") for q in data["smalltalk"]),
    ]


async def index_helpcentre(index: HybridIndex, *, app_id: str = APP) -> int:
    """Index the help-centre documents as ingest would chunk them; returns the chunk count."""
    chunks = [
        Chunk(
            app_id=app_id,
            file_id=f"file_{path.stem}",
            filename=path.name,
            position=n,
            text=piece.text,
            heading=piece.heading,
            page=piece.page,
        )
        for path in sorted(HELPCENTRE.glob("*.md"))
        for n, piece in enumerate(chunk_text(path.read_text()))
    ]
    return await index.add(chunks)


def _verdict(question: Question, answer: str, outcome: str, sources: int) -> str:
    if question.kind == "answerable":
        if outcome == "declined":
            return "declined"
        found = all(fact.lower() in answer.lower() for fact in question.facts)
        return "correct" if found else "wrong"
    if question.kind == "unanswerable":
        return "correct" if outcome == "declined" and sources == 0 and answer == NOT_FOUND else "wrong"
    return "correct" if outcome == "smalltalk" and sources == 0 else "wrong"


async def ask_all(
    index: HybridIndex,
    questions: Sequence[Question],
    *,
    min_relevance: float,
    top_k: int = 5,
    app_id: str = APP,
) -> Report:
    """Ask each question as a first turn, the way the chat pipeline does with the offline model."""
    report = Report()
    for question in questions:
        grounding = await ground(index, app_id, question.text, limit=top_k, min_relevance=min_relevance)
        answer = extract_answer(question.text, grounding.passages, persona=DEFAULT_SYSTEM_PROMPT)
        sources = len(grounding.passages)
        report.judged.append(
            Judged(
                question=question,
                answer=answer,
                outcome=grounding.outcome,
                sources=sources,
                top_relevance=grounding.best_relevance,
                verdict=_verdict(question, answer, grounding.outcome, sources),
            )
        )
    return report
