"""Curated answers: what an app's people wrote for the questions it gets, embedded here.

Ingest owns them (docs/support.md) because it owns the app's knowledge and its
embedder: each question is embedded once, when written, by the embedder of the app's index,
and stored with its vector (float16) in NATS KV ``obdal_answers`` under
``<app_id>.<answer_id>``. Chat workers mirror the bucket and match questions against those
vectors without embedding any curated question themselves. A record written by another
embedder (``OBDAL_EMBED_MODEL`` changed since) is re-embedded by its next update; chat
ignores it meanwhile.

Listing reads the app's records through one consumer of the bucket's stream, the last message
of each key, counting down the consumer's own pending count: nats-py's KV watch can end its
initial values before every one is read (:meth:`obdal_ingest.statuses.FileStatusStore.list`),
and one KV get per record, 1,000 at once, timed out. Measured with MiniLM on two cores: a
create with 1 and 20 questions takes 8-28 and 130-260 ms (embedding them, mostly); a page of 50
among 100 answers 12-30 ms, among 1,000 40-110 ms (the create's count of the app's answers is
that same read).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import nats.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE, KeyValue

from obdal_common import subjects
from obdal_common.cursors import decode_cursor, encode_cursor
from obdal_common.errors import Conflict, NotFound, PayloadTooLarge, UnprocessableContent
from obdal_common.ids import is_id, new_id
from obdal_common.messaging import read_record
from obdal_common.schemas import (
    CuratedAnswer,
    CuratedAnswerCreate,
    CuratedAnswerDeleted,
    CuratedAnswerLookup,
    CuratedAnswerPage,
    CuratedAnswerQuery,
    CuratedAnswerUpdate,
    decode,
    encode,
)
from obdal_ingest.statuses import FileStatusStore
from obdal_retrieval.embedders import Embedder
from obdal_retrieval.packed import pack

__all__ = ["MAX_ANSWER_CHARS", "MAX_QUESTIONS", "MAX_QUESTION_CHARS", "CuratedAnswerStore"]

# A curated answer is a help-centre answer, not a document: a few phrasings of one question
# and an answer of a few paragraphs. The bounds keep a record (its vectors included, ~1 KB of
# JSON per question) far below a KV value's 1 MB, and its embedding under a second.
MAX_QUESTIONS = 20
MAX_QUESTION_CHARS = 500
MAX_ANSWER_CHARS = 8000
# The bucket's stream and subjects, as NATS names every KV bucket's.
_STREAM = f"KV_{subjects.KV_ANSWERS}"
_SUBJECT_PREFIX = f"$KV.{subjects.KV_ANSWERS}."
# Longest wait for the next record of a listing the server said was pending.
_READ_S = 5.0
_READ_BATCH = 256


def _key(app_id: str, answer_id: str) -> str:
    return f"{app_id}.{answer_id}"


def _invalid(message: str) -> UnprocessableContent:
    return UnprocessableContent(message, code="invalid_curated_answer")


def _too_large(message: str) -> PayloadTooLarge:
    return PayloadTooLarge(message, code="curated_answer_too_large")


def _not_found(answer_id: str) -> NotFound:
    return NotFound(f"no curated answer {answer_id}", code="answer_not_found")


def _questions(given: list[str]) -> list[str]:
    """The questions stripped, duplicates dropped (case and spacing aside), first phrasing kept."""
    if not given:
        raise _invalid("a curated answer needs at least one question")
    kept: dict[str, str] = {}
    for question in given:
        if not question.strip():
            raise _invalid("a question must not be empty")
        if len(question) > MAX_QUESTION_CHARS:
            raise _too_large(f"a question is longer than {MAX_QUESTION_CHARS} characters")
        kept.setdefault(" ".join(question.split()).casefold(), question.strip())
    if len(kept) > MAX_QUESTIONS:
        raise _too_large(f"a curated answer may have at most {MAX_QUESTIONS} questions")
    return list(kept.values())


def _answer(text: str) -> str:
    if not text.strip():
        raise _invalid("the answer must not be empty")
    if len(text) > MAX_ANSWER_CHARS:
        raise _too_large(f"the answer is longer than {MAX_ANSWER_CHARS} characters")
    return text.strip()


def _order(record: CuratedAnswer) -> tuple[datetime, str]:
    return record.updated_at, record.answer_id


class CuratedAnswerStore:
    """Every app's curated answers, each with its questions' vectors by ``embedder``."""

    def __init__(
        self,
        kv: KeyValue,
        *,
        js: JetStreamContext,
        statuses: FileStatusStore,
        embedder: Embedder,
        max_per_app: int,
    ) -> None:
        self._kv = kv
        self._js = js
        self._statuses = statuses
        self._embedder = embedder
        self._max_per_app = max_per_app

    async def create(self, req: CuratedAnswerCreate) -> CuratedAnswer:
        """422 ``invalid_curated_answer``, 413 ``curated_answer_too_large``, 404 ``file_not_found``
        for a source that is not a file of the app, 409 ``too_many_curated_answers``."""
        questions, answer = _questions(req.questions), _answer(req.answer)
        filename = await self._source_filename(req.app_id, req.source_file_id)
        # Counted before writing: replicas creating at the same instant may pass the cap by one each.
        if len(await self._all(req.app_id)) >= self._max_per_app:
            raise Conflict(
                f"the app has {self._max_per_app} curated answers, as many as it may keep "
                "(OBDAL_MAX_CURATED_ANSWERS); delete some first",
                code="too_many_curated_answers",
            )
        now = datetime.now(UTC)
        record = CuratedAnswer(
            answer_id=new_id("ans"),
            app_id=req.app_id,
            questions=questions,
            answer=answer,
            created_at=now,
            updated_at=now,
            source_file_id=req.source_file_id,
            source_filename=filename,
            embedder=self._embedder.model_id,
            vectors=await self._vectors(questions, answer),
        )
        await self._kv.create(_key(record.app_id, record.answer_id), encode(record))
        return record

    async def update(self, req: CuratedAnswerUpdate) -> CuratedAnswer:
        """The fields given replaced, the questions re-embedded if they changed (or were embedded
        by another model); the same 422/413/404 as :meth:`create`, 404 ``answer_not_found``."""
        questions = None if isinstance(req.questions, msgspec.UnsetType) else _questions(req.questions)
        answer = None if isinstance(req.answer, msgspec.UnsetType) else _answer(req.answer)
        source: dict[str, Any] = {}
        if not isinstance(req.source_file_id, msgspec.UnsetType):
            filename = await self._source_filename(req.app_id, req.source_file_id)
            source = {"source_file_id": req.source_file_id, "source_filename": filename}

        async def change(current: CuratedAnswer) -> CuratedAnswer:
            asked = current.questions if questions is None else questions
            written = current.answer if answer is None else answer
            vectors = current.vectors
            if (asked, written, self._embedder.model_id) != (
                current.questions,
                current.answer,
                current.embedder,
            ):
                vectors = await self._vectors(asked, written)
            return msgspec.structs.replace(
                current,
                questions=asked,
                answer=written,
                updated_at=datetime.now(UTC),
                embedder=self._embedder.model_id,
                vectors=vectors,
                **source,
            )

        return await self._swap(req.app_id, req.answer_id, change)

    async def get(self, req: CuratedAnswerLookup) -> CuratedAnswer:
        return (await self._read(req.app_id, req.answer_id))[0]

    async def list_answers(self, req: CuratedAnswerQuery) -> CuratedAnswerPage:
        """A page, most recently updated first; 400 ``invalid_cursor``."""
        after = decode_cursor(req.cursor) if req.cursor else None
        records = sorted(await self._all(req.app_id), key=_order, reverse=True)
        if after is not None:
            records = [r for r in records if _order(r) < after]
        page = records[: req.limit]
        more = len(records) > req.limit
        return CuratedAnswerPage(
            answers=page, next_cursor=encode_cursor(*_order(page[-1])) if more and page else None
        )

    async def delete(self, req: CuratedAnswerLookup) -> CuratedAnswerDeleted:
        await self._read(req.app_id, req.answer_id)  # 404 for an answer the app does not have
        await self._kv.purge(_key(req.app_id, req.answer_id))
        return CuratedAnswerDeleted(answer_id=req.answer_id)

    async def delete_app(self, app_id: str) -> int:
        """Remove every curated answer of an app; how many there were."""
        records = await self._all(app_id)
        for record in records:
            await self._kv.purge(_key(app_id, record.answer_id))
        return len(records)

    async def follow_file(self, app_id: str, file_id: str, *, filename: str | None) -> None:
        """A source file renamed (``filename``) or deleted (``None``: its answers lose their source)."""

        async def change(current: CuratedAnswer) -> CuratedAnswer | None:
            if current.source_file_id != file_id:
                return None
            if filename is None:
                return msgspec.structs.replace(current, source_file_id=None, source_filename="")
            return msgspec.structs.replace(current, source_filename=filename)

        for record in await self._all(app_id):
            if record.source_file_id == file_id and record.source_filename != filename:
                with contextlib.suppress(NotFound):  # deleted meanwhile
                    await self._swap(app_id, record.answer_id, change)

    async def _swap(
        self,
        app_id: str,
        answer_id: str,
        change: Callable[[CuratedAnswer], Awaitable[CuratedAnswer | None]],
    ) -> CuratedAnswer:
        """The record as ``change`` makes it (``None``: left as it is), written with compare-and-set,
        so a writer racing on another replica is never overwritten: ``change`` sees its write."""
        while True:
            current, revision = await self._read(app_id, answer_id)
            changed = await change(current)
            if changed is None:
                return current
            try:
                await self._kv.update(_key(app_id, answer_id), encode(changed), last=revision)
            except KeyWrongLastSequenceError:
                continue  # changed or deleted meanwhile: start again from what it is now
            return changed

    async def _read(self, app_id: str, answer_id: str) -> tuple[CuratedAnswer, int]:
        """The record and its revision; 404 ``answer_not_found`` for an answer the app does not have."""
        if not is_id("ans", answer_id):
            raise _not_found(answer_id)
        found = await read_record(self._kv, _key(app_id, answer_id), CuratedAnswer)
        if found is None:
            raise _not_found(answer_id)
        return found

    async def _source_filename(self, app_id: str, file_id: str | None) -> str:
        """The name of the app's file ``file_id`` ("" for none); 404 ``file_not_found`` otherwise."""
        if file_id is None:
            return ""
        status = await self._statuses.get(app_id, file_id) if is_id("file", file_id) else None
        if status is None:
            raise NotFound(f"no file {file_id}", code="file_not_found")
        return status.filename

    async def _vectors(self, questions: list[str], answer: str) -> list[bytes]:
        """One vector per question, then one of the first question with the answer: a customer's
        words often echo the answer rather than the question (on bench/support.py's set, matching
        it too gave 64% of paraphrases their answer at 0.58 against 60% without, at the same 1.6%
        of unrelated questions)."""
        texts = [*questions, f"{questions[0]}\n{answer}"]
        return [pack(vector) for vector in await self._embedder.embed(texts)]

    async def _all(self, app_id: str) -> list[CuratedAnswer]:
        """Every curated answer of the app, read through a consumer of the bucket's stream of its
        own (the last message of each of the app's keys), until it reports none pending. A pull
        consumer: a pushed one may have delivered everything before its pending count is read."""
        name = new_id("answers")
        await self._js.add_consumer(
            _STREAM,
            ConsumerConfig(
                name=name,
                filter_subject=f"{_SUBJECT_PREFIX}{_key(app_id, '*')}",
                deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=_READ_S * 2,  # the server drops it if this worker dies here
            ),
        )
        try:
            sub = await self._js.pull_subscribe_bind(consumer=name, stream=_STREAM)
            pending = (await sub.consumer_info()).num_pending
            found: list[CuratedAnswer] = []
            while pending:
                for msg in await sub.fetch(min(pending, _READ_BATCH), timeout=_READ_S):
                    pending = msg.metadata.num_pending
                    # A deleted or purged key keeps its marker: the last message, with no value.
                    if msg.data and (msg.headers or {}).get(KV_OP) not in (KV_DEL, KV_PURGE):
                        found.append(decode(msg.data, CuratedAnswer))
            await sub.unsubscribe()
            return found
        finally:
            with contextlib.suppress(nats.errors.Error):  # gone already: inactive_threshold
                await self._js.delete_consumer(_STREAM, name)
