"""NATS handlers of metering: the durable event consumer and the query responders."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from opentelemetry import trace
from pymongo.errors import PyMongoError

from obdal_common import subjects
from obdal_common.errors import DependencyUnavailable
from obdal_common.messaging import serve_requests
from obdal_common.schemas import (
    AuditEvent,
    AuditPage,
    AuditQuery,
    EraseRequest,
    RetentionPolicy,
    RetentionQuery,
    SessionExportQuery,
    SessionLookup,
    SessionQuery,
    TurnEvent,
    UsageEvent,
    UsageQuery,
    UsageReport,
)
from obdal_common.telemetry import extract_context
from obdal_metering.erasure import Eraser
from obdal_metering.sessions import SessionStore
from obdal_metering.settings import MeteringSettings
from obdal_metering.store import MeteringStore

__all__ = ["MeteringHandlers"]

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

_EVENT_TYPES: dict[str, type[Any]] = {"usage": UsageEvent, "turn": TurnEvent, "audit": AuditEvent}
_RETRY_S = 1.0


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


def _store_guarded(handler: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
    """``handler`` with MongoDB being down answered as a 503, not an internal error."""

    async def guarded(request: Any) -> Any:
        try:
            return await handler(request)
        except PyMongoError as exc:
            log.warning("metering store unavailable: %s", exc)
            raise DependencyUnavailable(
                "the metering store (MongoDB) is unavailable, retry shortly", code="mongo_unavailable"
            ) from None

    return guarded


class MeteringHandlers:
    def __init__(
        self,
        nc: NATS,
        js: JetStreamContext,
        store: MeteringStore,
        sessions: SessionStore,
        eraser: Eraser,
        settings: MeteringSettings,
    ) -> None:
        self._nc = nc
        self._js = js
        self._store = store
        self._sessions = sessions
        self._eraser = eraser
        self._settings = settings
        self._subscriptions: list[Any] = []
        self.dead_lettered = 0
        self.stored = 0
        self.retention_erased = 0

    async def start(self) -> None:
        routes: list[tuple[str, type[Any], Callable[[Any], Awaitable[Any]]]] = [
            (subjects.METERING_USAGE, UsageQuery, self._usage),
            (subjects.METERING_SESSIONS, SessionQuery, self._sessions.summaries),
            (subjects.METERING_SESSION, SessionLookup, self._session),
            (subjects.METERING_SESSIONS_EXPORT, SessionExportQuery, self._sessions.export_page),
            (subjects.METERING_ERASE, EraseRequest, self._eraser.erase),
            (subjects.METERING_RETENTION_GET, RetentionQuery, self._eraser.retention),
            (subjects.METERING_RETENTION_SET, RetentionPolicy, self._eraser.set_retention),
            (subjects.METERING_AUDIT, AuditQuery, self._audit),
        ]
        for subject, request_type, handler in routes:
            self._subscriptions.append(
                await serve_requests(
                    self._nc,
                    subject,
                    request_type,
                    _store_guarded(handler),
                    span_name=subject.removeprefix("obdal."),
                )
            )

    async def stop(self) -> None:
        for sub in self._subscriptions:
            await sub.unsubscribe()

    async def _usage(self, query: UsageQuery) -> UsageReport:
        return await self._store.usage(query)

    async def _audit(self, query: AuditQuery) -> AuditPage:
        return await self._store.audit(query)

    async def _session(self, lookup: SessionLookup) -> Any:
        return await self._sessions.get(lookup.app_id, lookup.session_id)

    async def sweep_retention(self, stop: asyncio.Event) -> None:
        """Apply every app's retention policy every ``metering_retention_sweep_s`` until ``stop``."""
        while not stop.is_set():
            try:
                self.retention_erased += await self._eraser.sweep()
            except PyMongoError as exc:
                log.warning("retention sweep failed, retrying later: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._settings.metering_retention_sweep_s)

    async def consume(self, stop: asyncio.Event) -> None:
        """Store events in batches until ``stop``; a batch is acked only after it is written."""
        s = self._settings
        sub = await self._js.pull_subscribe(
            subjects.EVENTS_SUBJECTS[0],
            durable=subjects.METERING_CONSUMER,
            stream=subjects.EVENTS_STREAM,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT, max_deliver=s.metering_max_deliver, ack_wait=30
            ),
        )
        while not stop.is_set():
            try:
                msgs = await sub.fetch(s.metering_batch_size, timeout=s.metering_batch_wait_s)
            except (TimeoutError, NatsTimeoutError):
                continue
            except Exception as exc:  # NATS reconnecting
                log.warning("metering fetch failed: %s", exc)
                await asyncio.sleep(_RETRY_S)
                continue
            try:
                await self._store_batch(msgs, stop)
            except Exception as exc:  # NATS lost mid-batch: the unacked events are redelivered, stored once
                log.warning("metering batch interrupted, it will be redelivered: %r", exc)
        await sub.unsubscribe()

    async def _store_batch(self, msgs: list[Msg], stop: asyncio.Event) -> None:
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        valid: list[Msg] = []
        for msg in msgs:
            kind = msg.subject.rsplit(".", 1)[-1]
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
                attributes={"obdal.event": msg.subject.rsplit(".", 1)[-1]},
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
        for msg in valid:
            await msg.ack()

    async def _write(self, kind: str, docs: list[dict[str, Any]]) -> None:
        if kind != "turn":
            self.stored += await self._store.insert(kind, docs)
            return
        kept = await self._eraser.without_erased(docs)
        self.stored += await self._store.insert(kind, kept)
        # Every session of the batch, duplicates included: a redelivery after a crash repairs its summary.
        await self._sessions.refresh({(d["app_id"], d["session_id"]) for d in kept})

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        self.dead_lettered += 1
        log.error("dead-lettering %s: %s", msg.subject, reason)
        await self._js.publish(
            subjects.deadletter_subject("metering"),
            msg.data,
            headers={"Obdal-Reason": reason[:500], "Obdal-Subject": msg.subject},
        )
        await msg.term()
