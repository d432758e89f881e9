"""Where request/reply travels: NATS in every process, a dictionary in handler unit tests.

A :class:`Bus` moves bytes and headers; what they mean (types, errors, spans) is
:mod:`obdal_common.contract.rpc`'s job, so the in-memory bus exercises the same
encoding, error mapping and handler code as NATS does. FastStream's
``TestNatsBroker`` is the model: the unit under test is the handler, not a fake
of it, and the real-server tests stay beside these, not replaced by them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from obdal_common.errors import DependencyUnavailable

__all__ = ["Bus", "Handler", "MemoryBus", "NatsBus", "Reply", "Subscription"]

log = logging.getLogger(__name__)

Reply = tuple[bytes, Mapping[str, str]]
"""An answer: its body and its headers (the error header marks an error reply)."""

Handler = Callable[[bytes, Mapping[str, str]], Awaitable[Reply]]


class Subscription(Protocol):
    async def unsubscribe(self) -> None: ...


class Bus(Protocol):
    """Request/reply between services. ``service`` names the answering side in errors."""

    async def request(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str],
        timeout: float,  # noqa: ASYNC109 - a request timeout, not a cancellation scope
        service: str,
    ) -> Reply:
        """The answer; raises :class:`DependencyUnavailable` when nobody answers (in time)."""
        ...

    async def serve(self, subject: str, handler: Handler, *, queue: str, concurrency: int) -> Subscription:
        """Answer requests on ``subject`` with ``handler``, up to ``concurrency`` at a time."""
        ...


class NatsBus:
    """The bus of every running service: NATS core request/reply, queue groups for replicas."""

    def __init__(self, nc: NATS) -> None:
        self._nc = nc

    async def request(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str],
        timeout: float,  # noqa: ASYNC109 - a NATS request timeout
        service: str,
    ) -> Reply:
        try:
            msg = await self._nc.request(subject, data, timeout=timeout, headers=dict(headers))
        except NoRespondersError:
            raise DependencyUnavailable(
                f"no {service} service is running", code=f"{service}_unavailable"
            ) from None
        except (TimeoutError, NatsTimeoutError):
            raise DependencyUnavailable(
                f"the {service} service did not answer in time", code=f"{service}_timeout"
            ) from None
        except nats.errors.ConnectionClosedError:
            raise DependencyUnavailable("NATS connection is closed", code="nats_unavailable") from None
        return msg.data, msg.headers or {}

    async def serve(self, subject: str, handler: Handler, *, queue: str, concurrency: int) -> Subscription:
        limiter = asyncio.Semaphore(concurrency)
        tasks: set[asyncio.Task[None]] = set()

        async def answer(msg: Msg) -> None:
            async with limiter:
                data, headers = await handler(msg.data, msg.headers or {})
            if msg.reply:
                await self._nc.publish(msg.reply, data, headers=dict(headers) or None)

        async def on_message(msg: Msg) -> None:
            # nats-py runs callbacks one at a time per subscription: answer in tasks, so one
            # slow request (a MongoDB query) does not hold up the others.
            task = asyncio.create_task(answer(msg))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        sub: Subscription = await self._nc.subscribe(subject, queue=queue, cb=on_message)
        return sub


class _MemorySubscription:
    def __init__(self, bus: MemoryBus, subject: str, handler: Handler) -> None:
        self._bus = bus
        self._subject = subject
        self._handler = handler

    async def unsubscribe(self) -> None:
        self._bus._handlers[self._subject].remove(self._handler)


class MemoryBus:
    """A bus in one process for unit tests of handlers: every request goes through the same
    bytes, headers and error replies as over NATS; no subscriber is "no service running"."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self._turn = 0

    async def request(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str],
        timeout: float,  # noqa: ASYNC109 - mirrors NatsBus.request
        service: str,
    ) -> Reply:
        handlers = self._handlers.get(subject)
        if not handlers:
            raise DependencyUnavailable(f"no {service} service is running", code=f"{service}_unavailable")
        self._turn += 1  # a queue group: each request to one of the subscribers, in turn
        handler = handlers[self._turn % len(handlers)]
        try:
            return await asyncio.wait_for(handler(data, headers), timeout)
        except TimeoutError:
            raise DependencyUnavailable(
                f"the {service} service did not answer in time", code=f"{service}_timeout"
            ) from None

    async def serve(self, subject: str, handler: Handler, *, queue: str, concurrency: int) -> Subscription:
        del queue, concurrency  # one process: every subscriber is in the one group
        self._handlers.setdefault(subject, []).append(handler)
        return _MemorySubscription(self, subject, handler)
