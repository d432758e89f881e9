"""One answer: a curated answer if one answers the question, else retrieve, assemble the
prompt, generate; meter either."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any

import msgspec
from nats.js import JetStreamContext
from opentelemetry import metrics, trace
from redis.asyncio import Redis
from redis.exceptions import RedisError

from obdal_chat import smalltalk
from obdal_chat.admission import admit_session
from obdal_chat.app_settings import AppSettings, GenerationOptions
from obdal_chat.coalesce import coalesce
from obdal_chat.curated import CuratedAnswers, CuratedMatch
from obdal_chat.generation import Completion, Generator, answers_at_once
from obdal_chat.handoffs import OpenHandoffs
from obdal_chat.history import SessionHistory
from obdal_chat.prompts import build_messages
from obdal_chat.query_cache import QueryCache
from obdal_chat.settings import ChatSettings
from obdal_common import subjects
from obdal_common.budgets import BudgetExhausted, Reservation, TokenLedger
from obdal_common.errors import DependencyUnavailable, ObdalError, RateLimited
from obdal_common.hooks import budget_reached, publish_hook
from obdal_common.ids import new_id
from obdal_common.messaging import publish_event
from obdal_common.schemas import (
    ChatDelta,
    ChatEnd,
    ChatError,
    ChatReply,
    ChatRequest,
    ChatSources,
    ChatStarted,
    HookEventType,
    Source,
    TurnEvent,
    TurnOutcome,
    Usage,
    UsageEvent,
)
from obdal_retrieval import Hit, HybridIndex
from obdal_retrieval.embedders import curated_passage_floor, curated_threshold, relevance_floor
from obdal_retrieval.packed import pack

__all__ = ["AnswerPipeline"]

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)
_meter = metrics.get_meter(__name__)
_tokens = _meter.create_counter(
    "obdal.chat.tokens", unit="{token}", description="Tokens metered, by model and type (input, output)"
)
_cost = _meter.create_counter("obdal.chat.cost", unit="USD", description="Cost of the answers, by model")

_SNIPPET_CHARS = 240
# What a curated answer is metered and announced as: no model wrote it, and it costs nothing.
_CURATED_MODEL = "obdal/curated"
# What a question on a handed-off session is metered as: a person answers it, not a model.
_PERSON_MODEL = "obdal/person"
_NO_USAGE = Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0, cost=0.0)
# A curated answer streamed a few words a delta, as a model's would come (never joined: it is
# all there at once, and joined it would arrive as one message).
_WORD_GROUP = re.compile(r"\s*(?:\S+\s*){1,4}")
# Curated answers under the threshold that join the passages, ahead of the documents': at most
# two, so the documents keep most of the places.
_MAX_CURATED_PASSAGES = 2


def _source(hit: Hit) -> Source:
    snippet = hit.text if len(hit.text) <= _SNIPPET_CHARS else hit.text[:_SNIPPET_CHARS].rstrip() + "…"
    # A source's score is its relevance (comparable across questions), not its rank-fusion score.
    return Source(
        file_id=hit.file_id,
        filename=hit.filename,
        snippet=snippet,
        score=round(max(hit.relevance, 0.0), 4),
        page=hit.page,
        url=hit.url or None,
    )


class AnswerPipeline:
    """Turns a :class:`ChatRequest` into a stream of :data:`ChatReply` messages."""

    def __init__(
        self,
        settings: ChatSettings,
        *,
        index: HybridIndex,
        cache: QueryCache,
        history: SessionHistory,
        apps: AppSettings,
        curated: CuratedAnswers,
        handoffs: OpenHandoffs,
        generator: Generator,
        js: JetStreamContext,
        redis: Redis,
    ) -> None:
        self._settings = settings
        self._handoffs = handoffs
        self._index = index
        self._cache = cache
        self._curated = curated
        self._history = history
        self._apps = apps
        self._generator = generator
        self._js = js
        self._ledger = TokenLedger(redis, hold_s=settings.chat_reservation_ttl_s)
        self._min_relevance = (
            relevance_floor(index.embedder.model_id)
            if settings.chat_min_relevance is None
            else settings.chat_min_relevance
        )
        self._curated_threshold = (
            curated_threshold(index.embedder.model_id)
            if settings.chat_curated_threshold is None
            else settings.chat_curated_threshold
        )
        self._curated_passage_floor = min(
            curated_passage_floor(index.embedder.model_id), self._curated_threshold
        )

    async def admit(self, req: ChatRequest) -> ChatRequest:
        """The turn as it may go ahead, before the worker accepts it; raises an
        :class:`ObdalError` the gateway answers as the request's status."""
        admitted, started = await admit_session(req, history=self._history)
        if started:  # before its first answer, so a receiver hears of the conversation first
            await publish_hook(
                self._js,
                "conversation.started",
                app_id=admitted.app_id,
                data={"session_id": admitted.session_id, "user": admitted.user, "key_id": admitted.key_id},
                event_id=f"started.{admitted.session_id}",
                give_up_after=self._settings.event_publish_retry_s,
            )
        return admitted

    async def _reserve(self, req: ChatRequest, answer_id: str, tokens: int) -> Reservation | None:
        """Hold ``tokens`` (the prompt and the completion bound) of the key's budget, if it has
        one; raises 429 ``token_budget_exhausted`` when they do not fit."""
        if req.token_budget is None:
            return None
        try:
            return await self._ledger.reserve(
                req.key_id, answer_id=answer_id, tokens=tokens, budget=req.token_budget
            )
        except BudgetExhausted as exc:
            if exc.spent:  # the key answers no more today: receivers hear of it (once a day)
                data, event_id = budget_reached(
                    key_id=req.key_id, token_budget=req.token_budget, tokens_used=exc.used
                )
                await publish_hook(
                    self._js,
                    "budget.reached",
                    app_id=req.app_id,
                    data=data,
                    event_id=event_id,
                    give_up_after=self._settings.event_publish_retry_s,
                )
            raise
        except RedisError as exc:  # budgets fail open, like rate limits (docs/security.md)
            log.warning("could not reserve tokens of the budget of %s: %s", req.key_id, exc)
            return None

    async def answer(self, req: ChatRequest) -> AsyncIterator[ChatReply]:
        """Yield deltas, then sources, then the end (or an error). Always meters what was generated."""
        span = trace.get_current_span()
        span.set_attribute("obdal.app_id", req.app_id)
        span.set_attribute("obdal.session_id", req.session_id)
        message_id = new_id("msg")
        options = await self._apps.for_app(req.app_id)
        if self._handoffs.waiting(req.app_id, req.session_id):
            async for reply in self._left_to_a_person(req, message_id, options):
                yield reply
            return
        if req.history is None:
            history = await self._history.load(req.app_id, req.session_id)
        else:
            history = [{"role": m.role, "content": m.content} for m in req.history]
        # Retrieval sees the conversation, so a follow-up finds its topic's passages.
        previous = [m["content"] for m in history if m["role"] == "user"][-1:]
        # The question alone, embedded once: matched with curated answers, searched with when
        # there is no earlier context, and kept with the turn (metering groups questions by it).
        vector = None
        if smalltalk.classify(req.message) is None:
            vector = await self._cache.embed(req.app_id, req.message)
        matches = (
            []
            if vector is None
            else self._curated.match(req.app_id, vector, at_least=self._curated_passage_floor)
        )
        span.set_attribute(
            "obdal.curated.best_similarity", round(matches[0].similarity if matches else 0.0, 4)
        )
        packed = b"" if vector is None else pack(vector)
        if matches and matches[0].similarity >= self._curated_threshold:
            async for reply in self._curated_answer(req, message_id, options, matches[0], packed):
                yield reply
            return
        related = sorted(
            (match for match in matches if match.passage >= self._curated_passage_floor),
            key=lambda match: -match.passage,
        )[: min(_MAX_CURATED_PASSAGES, self._settings.chat_top_k)]
        with tracer.start_as_current_span("chat.retrieve") as rspan:
            # Cached while the app's indexed passages stay as they are (obdal_chat.query_cache).
            grounding = await self._cache.ground(
                req.app_id,
                req.message,
                context=previous,
                limit=self._settings.chat_top_k - len(related),
                min_relevance=self._min_relevance,
                dense=None if previous else vector,
            )
            hits = [match.hit() for match in related] + grounding.passages
            outcome: TurnOutcome = "answered" if related else grounding.outcome
            rspan.set_attribute("obdal.hits", grounding.found)
            rspan.set_attribute("obdal.hits.relevant", len(hits))
            rspan.set_attribute("obdal.hits.curated", len(related))
            rspan.set_attribute("obdal.hits.best_relevance", round(grounding.best_relevance, 4))
            rspan.set_attribute("obdal.turn.outcome", outcome)
        sources = [match.source() for match in related] + [_source(hit) for hit in grounding.passages]
        messages = build_messages(
            system_prompt=options.system_prompt,
            hits=hits,
            history=history,
            question=req.message,
        )
        # Counted before generating and announced to the gateway, which needs it to have the
        # answer metered if this worker dies mid-stream (a provider's own count replaces it).
        completion = Completion(prompt_tokens=self._generator.count_tokens(options.model, messages=messages))
        try:
            reservation = await self._reserve(req, message_id, completion.prompt_tokens + options.max_tokens)
        except RateLimited as exc:  # over budget: refused before anything is generated or metered
            yield ChatError(
                code=exc.code, message=exc.message, status=exc.status, retry_after_s=exc.retry_after
            )
            return
        yield ChatStarted(
            message_id=message_id,
            model=options.model,
            prompt_tokens=completion.prompt_tokens,
            session_id=req.session_id,
        )
        finished = False
        try:
            with tracer.start_as_current_span("chat.generate") as gspan:
                gspan.set_attribute("gen_ai.request.model", options.model)
                window_s = self._settings.chat_coalesce_ms / 1000
                if answers_at_once(options.model):
                    window_s = 0
                deltas = coalesce(
                    self._generator.stream(
                        messages, completion, options=options, question=req.message, passages=hits
                    ),
                    window_s=window_s,
                )
                # aclosing: the model's stream ends (and its tokens are counted) before usage is computed.
                async with aclosing(deltas):
                    async for delta in deltas:
                        yield ChatDelta(content=delta)
                gspan.set_attribute("gen_ai.usage.input_tokens", completion.prompt_tokens)
                gspan.set_attribute("gen_ai.usage.output_tokens", completion.completion_tokens)
            finished = True
        except ObdalError as exc:
            yield ChatError(code=exc.code, message=exc.message, status=exc.status)
        finally:
            usage = Usage(
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                total_tokens=completion.prompt_tokens + completion.completion_tokens,
                cost=self._generator.cost(completion, options=options),
            )
            model = {"gen_ai.request.model": options.model}
            _tokens.add(usage.prompt_tokens, {**model, "gen_ai.token.type": "input"})
            _tokens.add(usage.completion_tokens, {**model, "gen_ai.token.type": "output"})
            _cost.add(usage.cost, model)
            # Shielded: a cancelled answer (client gone) is still metered and kept.
            await asyncio.shield(
                self.record(
                    req,
                    message_id,
                    options,
                    completion.text,
                    sources,
                    usage,
                    finished,
                    outcome,
                    reservation=reservation,
                    question_vector=packed,
                )
            )
        if finished:
            yield ChatSources(sources=sources)
            yield ChatEnd(
                session_id=req.session_id,
                message_id=message_id,
                model=options.model,
                usage=usage,
                answered=outcome != "declined",
            )

    async def _left_to_a_person(
        self, req: ChatRequest, message_id: str, options: GenerationOptions
    ) -> AsyncIterator[ChatReply]:
        """The session waits for a person: keep the question (the person reads it, and the
        business hears of it), run no model, say nothing."""
        trace.get_current_span().set_attribute("obdal.turn.outcome", "handed_off")
        options = dataclasses.replace(options, model=_PERSON_MODEL)
        yield ChatStarted(
            message_id=message_id, model=_PERSON_MODEL, prompt_tokens=0, session_id=req.session_id
        )
        await asyncio.shield(self.record(req, message_id, options, "", [], _NO_USAGE, True, "handed_off"))
        yield ChatSources(sources=[])
        yield ChatEnd(
            session_id=req.session_id,
            message_id=message_id,
            model=_PERSON_MODEL,
            usage=_NO_USAGE,
            answered=False,
            handed_off=True,
        )

    async def _curated_answer(
        self,
        req: ChatRequest,
        message_id: str,
        options: GenerationOptions,
        match: CuratedMatch,
        question_vector: bytes,
    ) -> AsyncIterator[ChatReply]:
        """The curated answer as written: no model, no tokens, nothing reserved; streamed and
        metered like any answer (with outcome ``curated``)."""
        trace.get_current_span().set_attribute("obdal.turn.outcome", "curated")
        options = dataclasses.replace(options, model=_CURATED_MODEL)
        yield ChatStarted(
            message_id=message_id, model=_CURATED_MODEL, prompt_tokens=0, session_id=req.session_id
        )
        sources = [match.source()]
        usage = Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0, cost=0.0)
        sent: list[str] = []
        finished = False
        try:
            for delta in _WORD_GROUP.findall(match.answer.answer):
                sent.append(delta)
                yield ChatDelta(content=delta)
            finished = True
        finally:
            # Shielded: a cancelled answer (client gone) is still metered and kept.
            await asyncio.shield(
                self.record(
                    req,
                    message_id,
                    options,
                    "".join(sent),
                    sources,
                    usage,
                    finished,
                    "curated",
                    question_vector=question_vector,
                    curated_answer_id=match.answer.answer_id,
                )
            )
        yield ChatSources(sources=sources)
        yield ChatEnd(
            session_id=req.session_id, message_id=message_id, model=_CURATED_MODEL, usage=usage, answered=True
        )

    @staticmethod
    def _hook(
        req: ChatRequest,
        message_id: str,
        answer: str,
        sources: list[Source],
        usage: Usage,
        outcome: TurnOutcome,
    ) -> tuple[HookEventType, str, dict[str, Any]]:
        """What the app's webhooks hear of a turn: a question left to a person (``message.received``),
        or an answer given or declined, with its sources and usage."""
        asked = {
            "session_id": req.session_id,
            "message_id": message_id,
            "user": req.user,
            "question": req.message,
        }
        if outcome == "handed_off":
            return "message.received", f"received.{message_id}", asked
        answered = {
            **asked,
            "answer": answer,
            "outcome": outcome,
            "sources": [
                {"file_id": s.file_id, "filename": s.filename, "url": s.url, "score": s.score}
                for s in sources
            ],
            "usage": msgspec.to_builtins(usage),
        }
        return (
            ("message.declined" if outcome == "declined" else "message.answered"),
            f"answer.{message_id}",
            answered,
        )

    async def record(
        self,
        req: ChatRequest,
        message_id: str,
        options: GenerationOptions,
        answer: str,
        sources: list[Source],
        usage: Usage,
        finished: bool,
        outcome: TurnOutcome = "answered",
        *,
        reservation: Reservation | None = None,
        question_vector: bytes = b"",
        curated_answer_id: str | None = None,
    ) -> bool:
        """Publish the answer's usage and turn events, count its tokens against the key's budget
        (in place of its ``reservation``) and, if it finished, append it to the session history.
        ``question_vector``: the question's (:func:`obdal_retrieval.packed.pack`) by the index's
        embedder, if it was embedded. ``False`` if the events were lost."""
        now = datetime.now(UTC)
        usage_event = UsageEvent(
            event_id=subjects.usage_event_id(message_id),
            app_id=req.app_id,
            key_id=req.key_id,
            session_id=req.session_id,
            message_id=message_id,
            model=options.model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
            cost=usage.cost,
            occurred_at=now,
        )
        turn_event = TurnEvent(
            event_id=subjects.turn_event_id(message_id),
            app_id=req.app_id,
            key_id=req.key_id,
            session_id=req.session_id,
            message_id=message_id,
            user_message=req.message,
            answer=answer,
            sources=sources,
            usage=usage,
            occurred_at=now,
            user=req.user,
            outcome=outcome,
            question_vector=question_vector,
            embedder=self._index.embedder.model_id if question_vector else "",
            curated_answer_id=curated_answer_id,
        )
        published = True
        try:
            for subject, event in ((subjects.USAGE_EVENT, usage_event), (subjects.TURN_EVENT, turn_event)):
                # Retried through a NATS outage; the event ids are the message's, so a retry,
                # or the gateway's report of this answer if it thought this worker dead, is stored once.
                await publish_event(
                    self._js,
                    subject,
                    event,
                    msg_id=event.event_id,
                    give_up_after=self._settings.event_publish_retry_s,
                )
        except DependencyUnavailable as exc:  # NATS errors must not lose the answer already streamed
            log.error("usage of %s lost: %s", message_id, exc.message)
            published = False
        if outcome == "handed_off" or finished:
            event_type, event_id, data = self._hook(req, message_id, answer, sources, usage, outcome)
            await publish_hook(
                self._js,
                event_type,
                app_id=req.app_id,
                data=data,
                event_id=event_id,
                give_up_after=self._settings.event_publish_retry_s,
            )
        try:
            await self._ledger.settle(req.key_id, usage.total_tokens, reservation=reservation)
        except RedisError as exc:  # budgets fail open, like rate limits (docs/security.md)
            log.warning("could not count tokens against the budget of %s: %s", req.key_id, exc)
        # A client that sends its history keeps it itself; a question left to a person has no answer.
        if finished and req.history is None and outcome != "handed_off":
            await self._history.append(req.app_id, req.session_id, req.message, answer)
        return published
