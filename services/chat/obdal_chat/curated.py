"""Curated answers as chat sees them: a watched mirror of ingest's bucket, matched by vector.

Each record carries its questions' vectors (by the app's embedder, written by ingest), so a
turn costs one embedding of its question, shared with retrieval, and one matrix product per
app: the app's curated questions stacked into one float32 matrix, rebuilt when the watch
reports one of the app's records changed. A record embedded by another model than this
worker's (``OBDAL_EMBED_MODEL`` changed since it was written) cannot be compared and is left
out until ingest re-embeds it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from nats.js.kv import KeyValue

from obdal_common.kvmirror import KVMirror
from obdal_common.schemas import CuratedAnswer, Source
from obdal_retrieval import Hit
from obdal_retrieval.packed import unpack

__all__ = ["CURATED_FILENAME", "CuratedAnswers", "CuratedMatch"]

log = logging.getLogger(__name__)

# What a curated answer with no source file is cited as.
CURATED_FILENAME = "Curated answer"


@dataclass(frozen=True, slots=True)
class CuratedMatch:
    """A curated answer and its best vector's cosine similarity to the turn's question
    (``similarity``), and that of its passage, its first question with the answer (``passage``)."""

    answer: CuratedAnswer
    similarity: float
    passage: float

    def source(self) -> Source:
        """How the answer cites it: its source file if it names one, its first question."""
        return Source(
            file_id=self.answer.source_file_id or "",
            filename=self.answer.source_filename or CURATED_FILENAME,
            snippet=self.answer.questions[0],
            score=round(max(self.similarity, 0.0), 4),
            kind="curated",
            answer_id=self.answer.answer_id,
        )

    def hit(self) -> Hit:
        """The answer as a passage for the model: its question as the section, its text as the passage."""
        return Hit(
            app_id=self.answer.app_id,
            file_id=self.answer.source_file_id or "",
            filename=self.answer.source_filename or CURATED_FILENAME,
            position=0,
            text=self.answer.answer,
            heading=self.answer.questions[0],
            score=self.passage,
            relevance=round(self.passage, 4),
        )


@dataclass(frozen=True, slots=True)
class _AppQuestions:
    """One app's comparable curated answers and their questions' unit vectors, stacked."""

    answers: list[CuratedAnswer]
    matrix: np.ndarray[Any, np.dtype[np.float32]]
    # The first row of each answer's questions in ``matrix`` (rows of one answer are contiguous).
    starts: np.ndarray[Any, np.dtype[np.intp]]


def _app_of(key: str) -> str:
    return key.split(".", 1)[0]


class CuratedAnswers:
    """Every app's curated answers, matched against questions embedded by ``embedder``."""

    def __init__(self, kv: KeyValue, *, embedder: str) -> None:
        self._embedder = embedder
        self._apps: dict[str, _AppQuestions] = {}
        self._records = KVMirror(kv, CuratedAnswer, on_change=self._changed)

    async def start(self) -> None:
        await self._records.start()

    async def stop(self) -> None:
        await self._records.stop()

    def _changed(self, key: str) -> None:
        self._apps.pop(_app_of(key), None)  # rebuilt at its next question

    def match(self, app_id: str, vector: Sequence[float], *, at_least: float) -> list[CuratedMatch]:
        """The app's curated answers whose best vector is at least ``at_least`` similar to
        ``vector`` (a question's vector by this worker's embedder), best first."""
        questions = self._apps.get(app_id)
        if questions is None:
            questions = self._apps[app_id] = self._stack(app_id)
        if not questions.answers:
            return []
        query = np.asarray(vector, dtype=np.float32)
        similarities = questions.matrix @ (query / max(float(np.linalg.norm(query)), 1e-12))
        best = np.maximum.reduceat(similarities, questions.starts)
        # Each answer's last row is its passage vector (ingest's order).
        passages = similarities[np.append(questions.starts[1:], len(similarities)) - 1]
        order = np.argsort(-best, kind="stable")
        return [
            CuratedMatch(answer=questions.answers[i], similarity=float(best[i]), passage=float(passages[i]))
            for i in order
            if best[i] >= at_least
        ]

    def _stack(self, app_id: str) -> _AppQuestions:
        answers = sorted(
            (
                record
                for record in self._records.values()
                if record.app_id == app_id
                and record.embedder == self._embedder
                and record.questions
                and len(record.vectors) == len(record.questions) + 1
            ),
            key=lambda record: record.answer_id,  # the same order, so ties break the same way
        )
        if not answers:
            return _AppQuestions(answers=[], matrix=np.zeros((0, 0), np.float32), starts=np.zeros(0, np.intp))
        # One buffer for every question: 20,000 of them (1,000 answers of 20 questions, the most
        # by default) stack in ~45 ms on the event loop, once per change; one by one, ~300.
        rows = unpack(b"".join(vector for record in answers for vector in record.vectors))
        rows = rows.reshape(sum(len(record.vectors) for record in answers), -1)
        # float16 rounding moves a unit vector's norm off 1 by up to ~1e-3: normalised again.
        rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        sizes = [len(record.vectors) for record in answers]
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
        return _AppQuestions(answers=answers, matrix=rows, starts=starts)
