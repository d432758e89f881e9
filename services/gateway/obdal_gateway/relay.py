"""The chat relay: a request to the chat queue group, and its reply stream back.

The worker first answers ``accepted``, then deltas, sources and end (or an
error), with pings while the model is slow. The relay turns silence and
missing workers into typed errors so a client never hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.errors import TimeoutError as NatsTimeoutError
from opentelemetry import metrics

from obdal_common import subjects
from obdal_common.errors import BadGateway, DependencyUnavailable, GatewayTimeout, error_for_code
from obdal_common.ids import new_id
from obdal_common.messaging import publish_event
from obdal_common.schemas import (
    ChatAccepted,
    ChatDelta,
    ChatEnd,
    ChatError,
    ChatPing,
    ChatReply,
    ChatRequest,
    ChatSources,
    ChatStarted,
    PartialAnswer,
    Source,
    decode_chat_reply,
    encode,
)
from obdal_common.telemetry import inject_headers
from obdal_gateway.ratelimit import AnswerLease, AnswerSlots

__all__ = ["ChatRelay", "ChatStream", "CollectedAnswer"]

log = logging.getLogger(__name__)

_NO_RESPONDERS = "503"
# Reports of partial answers still being published (a reference keeps each task alive).
_reporting: set[asyncio.Task[None]] = set()
# Leases of answers still being given back (the same).
_releasing: set[asyncio.Future[None]] = set()

_meter = metrics.get_meter(__name__)
_ttft = _meter.create_histogram(
    "obdal.chat.time_to_first_token",
    unit="s",
    description="From handing a chat request to a worker to its first answer delta, as the gateway sees it",
)
_answer_duration = _meter.create_histogram(
    "obdal.chat.duration", unit="s", description="From handing a chat request to a worker to its last reply"
)


@dataclass(frozen=True, slots=True)
class CollectedAnswer:
    content: str
    sources: list[Source]
    end: ChatEnd


class ChatStream:
    """The replies of one accepted chat request. Iterate it; close it when done."""

    def __init__(
        self,
        nc: NATS,
        sub: Any,
        request: ChatRequest,
        *,
        stream: bool,
        idle_timeout: float,
        publish_retry_s: float,
        lease: AnswerLease,
    ) -> None:
        self._nc = nc
        self._sub = sub
        self._lease = lease
        self._request = request
        self._request_id = request.request_id
        self._idle_timeout = idle_timeout
        self._publish_retry_s = publish_retry_s
        self._announced: ChatStarted | None = None
        self._relayed: list[str] = []
        self._finished = False
        self._started = time.perf_counter()
        self._first_token = False
        self._outcome = "cancelled"
        self._attrs = {"obdal.stream": stream}  # the client's, for the latency metrics
        self._early: list[ChatReply] = []  # read by begin(), not yet iterated
        self._source = self._replies()  # one reader, shared by begin() and iteration

    async def begin(self) -> None:
        """Wait until the worker starts generating, so that what refuses a turn before that (a
        budget it does not fit, a failed retrieval) is the request's status, not an SSE
        ``error`` after a 200. Raises that error; replies read meanwhile are kept for
        iteration. It returns at the start signal, sent just before the first delta."""
        async for reply in self._source:
            if isinstance(reply, ChatStarted):
                return
            if isinstance(reply, ChatError):
                raise error_for_code(reply.status, reply.code, reply.message, retry_after=reply.retry_after_s)
            if not isinstance(reply, ChatPing):
                self._early.append(reply)
                return

    async def __aiter__(self) -> AsyncIterator[ChatReply]:
        """Every reply after ``accepted``, pings included, ending with end or error."""
        early, self._early = self._early, []
        for reply in early:
            yield reply
            if self._finished:
                return
        async for reply in self._source:
            if not isinstance(reply, ChatStarted):
                yield reply

    async def _replies(self) -> AsyncIterator[ChatReply]:
        while True:
            try:
                msg = await self._sub.next_msg(timeout=self._idle_timeout)
            except (TimeoutError, NatsTimeoutError):
                # Not finished: closing tells a worker that is only slow to stop.
                self._outcome = "worker_timeout"
                self._report_partial()
                yield ChatError(
                    code="worker_timeout",
                    message="the chat worker stopped responding",
                    status=GatewayTimeout.status,
                )
                return
            await self._lease.renew()  # the worker's pings come every second while it is alive
            try:
                reply = decode_chat_reply(msg.data)
            except msgspec.ValidationError:
                continue
            if isinstance(reply, ChatStarted):  # the gateway's own: kept to meter a dead worker's answer
                self._announced = reply
            if isinstance(reply, ChatDelta):
                self._relayed.append(reply.content)
                if not self._first_token:
                    self._first_token = True
                    _ttft.record(time.perf_counter() - self._started, self._attrs)
            if isinstance(reply, ChatEnd | ChatError):
                self._finished = True
                self._outcome = "end" if isinstance(reply, ChatEnd) else "error"
            yield reply
            if self._finished:
                return

    def _report_partial(self) -> None:
        """Hand what the client received of a dead worker's answer to a surviving worker to meter."""
        if self._announced is None:  # the worker died before counting the prompt: nothing was generated
            return
        req = self._request
        partial = PartialAnswer(
            event_id=new_id("evt"),
            app_id=req.app_id,
            key_id=req.key_id,
            session_id=self._announced.session_id,
            message_id=self._announced.message_id,
            model=self._announced.model,
            prompt_tokens=self._announced.prompt_tokens,
            user_message=req.message,
            answer="".join(self._relayed),
            occurred_at=datetime.now(UTC),
            user=req.user,
        )
        task = asyncio.create_task(_publish_partial(self._nc, partial, give_up_after=self._publish_retry_s))
        _reporting.add(task)
        task.add_done_callback(_reporting.discard)

    async def collect(self) -> CollectedAnswer:
        """The whole answer (for non-streamed responses); a worker error is raised; closes the stream."""
        parts: list[str] = []
        sources: list[Source] = []
        try:
            async for reply in self:
                if isinstance(reply, ChatDelta):
                    parts.append(reply.content)
                elif isinstance(reply, ChatSources):
                    sources = reply.sources
                elif isinstance(reply, ChatEnd):
                    return CollectedAnswer(content="".join(parts), sources=sources, end=reply)
                elif isinstance(reply, ChatError):
                    raise error_for_code(
                        reply.status, reply.code, reply.message, retry_after=reply.retry_after_s
                    )
        finally:
            await self.close()
        raise BadGateway("the answer ended unexpectedly", code="incomplete_answer")

    async def close(self, *, cancel_worker: bool = True) -> None:
        """Release the reply subscription and the answer's lease; tell the worker to stop if the
        answer is unfinished."""
        if cancel_worker:  # an accepted request: it ends here, whatever the outcome
            _answer_duration.record(
                time.perf_counter() - self._started, {**self._attrs, "obdal.outcome": self._outcome}
            )
        if cancel_worker and not self._finished:
            with contextlib.suppress(Exception):
                await self._nc.publish(subjects.chat_cancel_subject(self._request_id), b"")
        with contextlib.suppress(Exception):
            await self._sub.unsubscribe()
        # A task of its own, shielded: a client gone cancels this close, and the place must still
        # be given back.
        release = asyncio.ensure_future(self._lease.release())
        _releasing.add(release)
        release.add_done_callback(_releasing.discard)
        await asyncio.shield(release)


async def _publish_partial(nc: NATS, partial: PartialAnswer, *, give_up_after: float) -> None:
    try:
        await publish_event(
            nc.jetstream(),
            subjects.CHAT_PARTIAL,
            partial,
            msg_id=partial.event_id,
            give_up_after=give_up_after,
        )
    except DependencyUnavailable as exc:
        log.error("the partial answer %s is not metered: %s", partial.message_id, exc.message)


class ChatRelay:
    def __init__(
        self,
        nc: NATS,
        *,
        accept_timeout: float,
        idle_timeout: float,
        publish_retry_s: float,
        slots: AnswerSlots,
    ) -> None:
        self._nc = nc
        self._slots = slots
        self._accept_timeout = accept_timeout
        self._idle_timeout = idle_timeout
        self._publish_retry_s = publish_retry_s

    async def open(self, request: ChatRequest, *, stream: bool) -> ChatStream:
        """Hand ``request`` to a chat worker (``stream``: whether the client asked for SSE, a metric
        attribute). Raises 429 if its key has as many answers in flight as it may, 503 if no worker
        takes it in time."""
        if not self._nc.is_connected:
            raise DependencyUnavailable("the message bus is unavailable", code="nats_unavailable")
        lease = await self._slots.acquire(request.key_id, request.request_id)
        try:
            inbox = self._nc.new_inbox()
            sub = await self._nc.subscribe(inbox)
        except BaseException:
            await lease.release()
            raise
        replies = ChatStream(
            self._nc,
            sub,
            request,
            stream=stream,
            idle_timeout=self._idle_timeout,
            publish_retry_s=self._publish_retry_s,
            lease=lease,
        )
        try:
            await self._nc.publish(
                subjects.CHAT_REQUEST, encode(request), reply=inbox, headers=inject_headers()
            )
            try:
                first = await sub.next_msg(timeout=self._accept_timeout)
            except (TimeoutError, NatsTimeoutError):
                raise DependencyUnavailable(
                    "no chat worker took the request in time", code="no_worker_available"
                ) from None
            if first.headers and first.headers.get("Status") == _NO_RESPONDERS:
                raise DependencyUnavailable("no chat worker is running", code="no_worker_available")
            reply = decode_chat_reply(first.data)
            if isinstance(reply, ChatError):
                raise error_for_code(reply.status, reply.code, reply.message, retry_after=reply.retry_after_s)
            if not isinstance(reply, ChatAccepted):
                raise DependencyUnavailable("unexpected reply from chat worker", code="bad_worker_reply")
        except BaseException:
            await replies.close(cancel_worker=False)
            raise
        try:
            await replies.begin()
        except BaseException:  # refused before generating, or the client left: the stream ends here
            await replies.close()
            raise
        return replies
