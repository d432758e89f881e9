"""CORS and per-request response headers, decided per key rather than app-wide.

Litestar's CORS config is app-wide; ours follows each key's allowed origins:
a preflight (which carries no key) passes only for an origin some active key
allows, and an actual response reflects the origin only when the request's own
key allowed it. Every answer to a request with an ``Origin`` varies on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from litestar.datastructures import Headers, MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    Receive,
    Scope,
    Send,
)

from obdal_gateway.error_responses import send_error

__all__ = ["RESPONSE_HEADERS", "PolicyHeadersMiddleware", "add_response_headers", "allow_origin"]

RESPONSE_HEADERS = "obdal.response_headers"
_ALLOW_HEADERS = "Authorization, Content-Type"
_EXPOSE_HEADERS = "Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"
_PREFLIGHT_MAX_AGE = "600"


def add_response_headers(scope: Any, headers: dict[str, str]) -> None:
    """Ask for ``headers`` on this request's response, whatever the handler returns or raises."""
    cast(dict[str, Any], scope).setdefault(RESPONSE_HEADERS, {}).update(headers)


def allow_origin(scope: Any, origin: str) -> None:
    """The request's key allows ``origin``: let the browser read the response."""
    add_response_headers(
        scope, {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": _EXPOSE_HEADERS}
    )


class PolicyHeadersMiddleware(ASGIMiddleware):
    """Middleware answering preflights and adding the per-request headers (HTTP only)."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, *, preflight_allowed: Callable[[str], bool]) -> None:
        self._preflight_allowed = preflight_allowed

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        request_headers = Headers.from_scope(scope)
        origin = request_headers.get("origin")
        if (
            scope.get("method") == "OPTIONS"
            and origin
            and request_headers.get("access-control-request-method")
        ):
            await self._preflight(origin, request_headers, send)
            return
        extra: dict[str, str] = cast(dict[str, Any], scope).setdefault(RESPONSE_HEADERS, {})

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                for name, value in extra.items():
                    headers[name] = value
                if origin is not None:
                    headers.extend_header_value("vary", "Origin")
            await send(message)

        await next_app(scope, receive, send_with_headers)

    async def _preflight(self, origin: str, request_headers: Headers, send: Send) -> None:
        vary = (b"vary", b"Origin")
        if not self._preflight_allowed(origin):
            message = "this origin is not allowed by any key"
            await send_error(send, 403, "origin_not_allowed", message, headers=[vary])
            return
        headers = [
            (b"access-control-allow-origin", origin.encode()),
            (b"access-control-allow-methods", b"GET, POST, PUT, DELETE"),
            (b"access-control-allow-headers", _ALLOW_HEADERS.encode()),
            (b"access-control-max-age", _PREFLIGHT_MAX_AGE.encode()),
            vary,
            (b"content-length", b"0"),
        ]
        start: HTTPResponseStartEvent = {"type": "http.response.start", "status": 204, "headers": headers}
        await send(start)
        end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": b"", "more_body": False}
        await send(end)
