"""Every error leaves the gateway as ``{"error": {"code", "message"}}`` with its status."""

from __future__ import annotations

import logging
from typing import Any

import nats.errors
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap, HTTPResponseBodyEvent, HTTPResponseStartEvent, Send

from obdal_common.errors import ObdalError, RateLimited, error_class
from obdal_common.schemas import encode

__all__ = ["EXCEPTION_HANDLERS", "error_body", "send_error"]

log = logging.getLogger(__name__)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


async def send_error(
    send: Send, status: int, code: str, message: str, *, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer with the JSON error body straight from ASGI middleware, which runs before any route."""
    body = encode(error_body(code, message))
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *(headers or []),
        ],
    }
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(end)


def _obdal(_: Request[Any, Any, Any], exc: ObdalError) -> Response[dict[str, Any]]:
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
    if exc.status >= 500:
        log.warning("%s: %s", exc.code, exc.message)
    return Response(error_body(exc.code, exc.message), status_code=exc.status, headers=headers)


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    details = exc.extra if isinstance(exc.extra, list) else []
    parts = []
    for item in details:
        if isinstance(item, dict):
            where = item.get("key") or item.get("source") or ""
            parts.append(f"{where}: {item.get('message', '')}".strip(": "))
    message = "; ".join(parts) or exc.detail or "invalid request"
    return Response(error_body("invalid_request", message), status_code=400)


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code
    if status >= 500:
        log.error("http error %s: %s", status, exc.detail)
    # Litestar's own errors (unknown route, wrong method, body too large) get the hierarchy's codes.
    code = error_class(status).default_code
    return Response(error_body(code, str(exc.detail)), status_code=status, headers=exc.headers)


def _bus(_: Request[Any, Any, Any], exc: nats.errors.Error) -> Response[dict[str, Any]]:
    # A NATS call that failed for want of the server (restarting, reconnecting): not the client's fault.
    log.warning("message bus unavailable: %r", exc)
    return Response(
        error_body("nats_unavailable", "the message bus is unavailable, retry shortly"),
        status_code=503,
        headers={"Retry-After": "1"},
    )


def _undecodable(
    _: Request[Any, Any, Any], exc: UnicodeDecodeError | RecursionError
) -> Response[dict[str, Any]]:
    # Raised by the JSON decoder itself (not as a validation error) for bytes that are not
    # UTF-8 and for pathologically nested documents: both are the client's input.
    if isinstance(exc, UnicodeDecodeError):
        return Response(error_body("invalid_encoding", "the body is not valid UTF-8"), status_code=400)
    return Response(error_body("too_deeply_nested", "the JSON body is nested too deeply"), status_code=400)


def _unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.exception("unhandled error", exc_info=exc)
    return Response(error_body("internal_error", "internal error"), status_code=500)


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ObdalError: _obdal,
    ValidationException: _validation,
    HTTPException: _http,
    nats.errors.Error: _bus,
    UnicodeDecodeError: _undecodable,
    RecursionError: _undecodable,
    Exception: _unexpected,
}
