"""Metering's durable event consumer: usage, turns and audit into MongoDB, acked once written.

A turn event holds a question, its answer and the cited snippets. With only the ack (or the
stream's 14-day ``max_age``), a session erased in MongoDB stayed readable in the stream's block
file for two weeks: an ack or an expiry drops a message from the index, not from the file.
So once a batch is written, each of its turn events is erased from the stream
(:func:`~obdal_common.messaging.erase_msg`: the server overwrites the record) and then acked;
a turn event dropped because its session was erased, or dead-lettered, is erased too. Measured
on 2 cores: an erase costs 2.5-4.7 ms (the server rewrites and syncs the record; a delete
without erasing is 0.4 ms, an ack 0.01 ms), so usage and audit events, which hold no content,
are only acked and keep their 14 days. Erasing after the write does not delay usage or
sessions; it bounds this consumer to ~250 turns/s per NATS server. Chosen over turn events that
carry only ids (chat would have to keep the content where metering reads it: one more copy to
erase) and over chat encrypting them with the session's key (chat would need the keys metering
owns, :mod:`obdal_metering.sealing`, and an event would still sit in the stream for 14 days).

Before a turn is stored, its question joins a group of similar ones (:mod:`obdal_metering.grouping`),
its cited files are noted in clear (:func:`obdal_metering.rollups.citations`), and its day is
marked for the analytics to recompute (:mod:`obdal_metering.rollups`).

The erase comes before the ack: if metering dies between the two, the redelivery finds the
event gone and JetStream skips it (checked: nothing is redelivered, nothing stays pending);
if it dies before the erase, the redelivery is stored again (the unique ``event_id`` index
drops the copy) and erased. JetStream still drops a duplicate publish of an erased event
within its 10-minute window.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections import defaultdict
from datetime import datetime
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from opentelemetry import trace
from pymongo.errors import PyMongoError

from obdal_common import subjects
from obdal_common.messaging import erase_msg, pull_batches
from obdal_common.schemas import (
    AuditEvent,
    TurnEvent,
    UsageEvent,
)
from obdal_common.telemetry import extract_context
from obdal_metering.erasure import Eraser
from obdal_metering.grouping import Groups, decode_vector
from obdal_metering.rollups import Rollups, citations
from obdal_metering.sealing import SessionKeys
from obdal_metering.sessions import SessionStore
from obdal_metering.settings import MeteringSettings
from obdal_metering.store import MeteringStore

__all__ = ["EventConsumer"]

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

_EVENT_TYPES: dict[str, type[Any]] = {"usage": UsageEvent, "turn": TurnEvent, "audit": AuditEvent}
_RETRY_S = 1.0


def _kind(msg: Msg) -> str:
    return msg.subject.rsplit(".", 1)[-1]


def _inconsistency(event: UsageEvent | TurnEvent | AuditEvent) -> str | None:
    """Why an event's numbers cannot be counted (they would make totals disagree), if they cannot."""
    if isinstance(event, AuditEvent):
        return None
    usage = event.usage if isinstance(event, TurnEvent) else event
    if min(usage.prompt_tokens, usage.completion_tokens, usage.cost) < 0:
        return "negative tokens or cost"
    if usage.total_tokens != usage.prompt_tokens + usage.completion_tokens:
        return "total_tokens is not prompt_tokens + completion_tokens"
    return None


class EventConsumer:
    """Stores usage, turn and audit events from the events stream, in batches, exactly once."""

    def __init__(
        self,
        js: JetStreamContext,
        store: MeteringStore,
        sessions: SessionStore,
        eraser: Eraser,
        settings: MeteringSettings,
        *,
        keys: SessionKeys,
        groups: Groups,
        rollups: Rollups,
    ) -> None:
        self._js = js
        self._keys = keys
        self._groups = groups
        self._rollups = rollups
        self._store = store
        self._sessions = sessions
        self._eraser = eraser
        self._settings = settings
        self.dead_lettered = 0
        self.stored = 0

    async def consume(self, stop: asyncio.Event) -> None:
        """Store events in batches until ``stop``; a batch is acked only after it is written."""
        s = self._settings
        sub = await self._js.pull_subscribe(
            subjects.EVENTS_SUBJECTS[0],
            durable=subjects.METERING_CONSUMER,
            stream=subjects.EVENTS_STREAM,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                max_deliver=s.metering_max_deliver,
                ack_wait=s.metering_ack_wait_s,
            ),
        )

        async def store(msgs: list[Msg]) -> None:
            await self._store_batch(msgs, stop)

        await pull_batches(
            sub,
            store,
            stop=stop,
            batch=s.metering_batch_size,
            wait_s=s.metering_batch_wait_s,
            what="metering batch",
        )

    async def _store_batch(self, msgs: list[Msg], stop: asyncio.Event) -> None:
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        valid: list[Msg] = []
        for msg in msgs:
            kind = _kind(msg)
            try:
                event = msgspec.json.decode(msg.data, type=_EVENT_TYPES[kind])
            except (KeyError, msgspec.ValidationError, msgspec.DecodeError) as exc:
                await self._dead_letter(msg, f"undecodable {kind} event: {exc}")
                continue
            reason = _inconsistency(event)
            if reason is not None:
                await self._dead_letter(msg, f"inconsistent {kind} event {event.event_id}: {reason}")
                continue
            grouped[kind].append(msgspec.to_builtins(event, builtin_types=(datetime,)))
            valid.append(msg)
        if not valid:
            return
        # A batch mixes events of many requests: each event gets a span in its own request's
        # trace (so every trace ends with its write), and the batch span links to them all.
        event_spans = [
            tracer.start_span(
                "metering.store",
                context=extract_context(msg.headers),
                attributes={"obdal.event": _kind(msg)},
            )
            for msg in valid
        ]
        links = [trace.Link(event_span.get_span_context()) for event_span in event_spans]
        try:
            with tracer.start_as_current_span("metering.write", links=links) as span:
                span.set_attribute("obdal.events", len(valid))
                while True:
                    try:
                        for kind, docs in grouped.items():
                            await self._write(kind, docs)
                        break
                    except PyMongoError as exc:
                        # Keep the batch (unacked, marked in progress) until MongoDB is back.
                        log.warning("metering store unavailable, retrying: %s", exc)
                        if stop.is_set():
                            return
                        for msg in valid:
                            await msg.in_progress()
                        await asyncio.sleep(_RETRY_S)
        finally:
            for event_span in event_spans:
                event_span.end()
        await asyncio.gather(*(erase_msg(self._js, msg) for msg in valid if _kind(msg) == "turn"))
        for msg in valid:
            await msg.ack()

    async def _write(self, kind: str, docs: list[dict[str, Any]]) -> None:
        if kind != "turn":
            self.stored += await self._store.insert(kind, docs)
            return
        kept = await self._eraser.without_erased(docs)
        for doc in kept:
            doc["cited"] = citations(doc["sources"])
        # A redelivered turn already stored keeps its group: only new ones are grouped.
        stored = await self._store.stored_event_ids("turn", [d["event_id"] for d in kept])
        new = [d for d in kept if d["event_id"] not in stored]
        await self._groups.assign(new, [decode_vector(base64.b64decode(d["question_vector"])) for d in new])
        self.stored += await self._store.insert(kind, await self._keys.seal_turns(kept))
        # Every session of the batch, duplicates included: a redelivery after a crash repairs its summary.
        await self._sessions.refresh({(d["app_id"], d["session_id"]) for d in kept})
        await self._rollups.mark((d["app_id"], d["occurred_at"]) for d in kept)

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        self.dead_lettered += 1
        log.error("dead-lettering %s: %s", msg.subject, reason)
        await self._js.publish(
            subjects.deadletter_subject("metering"),
            msg.data,
            headers={"Obdal-Reason": reason[:500], "Obdal-Subject": msg.subject},
        )
        if _kind(msg) == "turn":
            await erase_msg(self._js, msg)  # the dead letter is the one copy kept
        await msg.term()
