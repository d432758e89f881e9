"""Slow clients: a response the client does not read within a time limit is abandoned.

What the gateway holds for a client that reads slowly (or not at all) is bounded by
the socket buffers and uvicorn's write buffer; once those are full, sending waits.
Without a limit a client that stops reading would keep its response (and, for a
chat stream, its reply subscription) open forever; with it, a send that cannot
complete within ``timeout_s`` ends the response and closes the connection. Chat
workers never wait for the client at all: they publish to NATS and move on.
"""

from __future__ import annotations

import asyncio
import logging

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SendTimeout"]

log = logging.getLogger(__name__)


class _ClientTooSlow(Exception):
    """The client did not take a response chunk within the time limit."""


class SendTimeout(ASGIMiddleware):
    """Middleware that drops an HTTP client whose response cannot be sent within ``timeout_s``.

    The gateway runs it around routing (obdal_gateway.app), so every response is bounded,
    the router's own 404/405 and the exception handlers' answers included.
    """

    scopes = (ScopeType.HTTP,)

    def __init__(self, *, timeout_s: float) -> None:
        self._timeout_s = timeout_s

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        dropped = False

        async def bounded_send(message: Message) -> None:
            nonlocal dropped
            if dropped:  # e.g. an error handler trying to answer after the drop
                raise _ClientTooSlow
            try:
                await asyncio.wait_for(send(message), self._timeout_s)
            except TimeoutError:
                dropped = True
                raise _ClientTooSlow from None

        try:
            await next_app(scope, receive, bounded_send)
        except _ClientTooSlow:
            client = scope.get("client") or ("?", 0)
            log.info("dropped %s:%s: it read nothing for %g s", client[0], client[1], self._timeout_s)
        except BaseException:
            if not dropped:
                raise
            # The application reacted to the drop with an error of its own: the client is gone anyway.
            log.info("dropped a slow client (its response ended with an error)")
