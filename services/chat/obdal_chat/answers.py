"""The streamed answer: take a request of the `chat` queue group, stream the answer to its inbox."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from opentelemetry import trace

from obdal_chat.pipeline import AnswerPipeline
from obdal_common import subjects
from obdal_common.errors import ObdalError
from obdal_common.schemas import ChatAccepted, ChatError, ChatPing, ChatRequest, decode, encode
from obdal_common.telemetry import extract_context

__all__ = ["AnswerServer"]

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)


class AnswerServer:
    """Answers chat requests of the ``chat`` queue group, a bounded number at a time."""

    def __init__(self, nc: NATS, pipeline: AnswerPipeline, *, heartbeat_s: float, concurrency: int) -> None:
        self._nc = nc
        self._pipeline = pipeline
        self._heartbeat_s = heartbeat_s
        self._capacity = concurrency
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscriptions: list[Any] = []

    async def start(self) -> None:
        self._subscriptions.append(
            await self._nc.subscribe(subjects.CHAT_REQUEST, queue=subjects.CHAT_QUEUE, cb=self._on_request)
        )

    async def stop(self) -> None:
        """Stop taking requests and let answers in flight finish (bounded by their own timeouts)."""
        for sub in self._subscriptions:
            await sub.unsubscribe()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        for task in self._tasks:
            task.cancel()

    async def _on_request(self, msg: Msg) -> None:
        if not msg.reply:
            return
        if len(self._tasks) >= self._capacity:
            await self._send(
                msg.reply, ChatError(code="worker_busy", message="all chat workers are busy", status=503)
            )
            return
        task = asyncio.create_task(self._serve(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, inbox: str, reply: Any) -> None:
        await self._nc.publish(inbox, encode(reply))

    async def _serve(self, msg: Msg) -> None:
        inbox = msg.reply
        try:
            req = decode(msg.data, ChatRequest)
        except msgspec.ValidationError as exc:
            await self._send(inbox, ChatError(code="bad_message", message=str(exc), status=400))
            return
        with tracer.start_as_current_span("chat.answer", context=extract_context(msg.headers)):
            try:
                req = await self._pipeline.admit(req)
            except ObdalError as exc:  # refused before accepting: the gateway answers its status
                await self._send(inbox, ChatError(code=exc.code, message=exc.message, status=exc.status))
                return
            await self._send(inbox, ChatAccepted())
            answer = asyncio.create_task(self._pump(inbox, req))

            async def on_cancel(_: Msg) -> None:
                answer.cancel()

            cancel_sub = await self._nc.subscribe(subjects.chat_cancel_subject(req.request_id), cb=on_cancel)
            try:
                # While the model is slow, pings tell the gateway this worker is alive.
                while not answer.done():
                    done, _ = await asyncio.wait({answer}, timeout=self._heartbeat_s)
                    if not done:
                        await self._send(inbox, ChatPing())
                await answer
            except asyncio.CancelledError:
                log.info("answer %s cancelled by its client", req.request_id)
            except Exception:
                log.exception("answer %s failed", req.request_id)
                await self._send(
                    inbox, ChatError(code="internal_error", message="the answer failed", status=500)
                )
            finally:
                await cancel_sub.unsubscribe()

    async def _pump(self, inbox: str, req: ChatRequest) -> None:
        async for reply in self._pipeline.answer(req):
            await self._send(inbox, reply)
