"""Server-sent events encoded straight to bytes.

Litestar's ``ServerSentEvent`` runs the first step of every stream in a worker thread
and builds each event through ``StringIO`` and regular expressions. Our events carry
JSON (which never contains a raw line break) or a fixed comment, so they are joined
directly, in the same format (``\\r\\n`` line ends).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from litestar.response import Stream

__all__ = ["PING", "sse_event", "sse_response"]

PING = b": ping\r\n\r\n"


def sse_event(event: str, data: bytes, *, event_id: str | None = None) -> bytes:
    """One ``event:`` with a single-line ``data:`` (``data`` must not contain a line break), and
    the ``id:`` a reconnecting browser sends back as ``Last-Event-ID`` (an id of ours: no line break)."""
    head = b"" if event_id is None else b"id: " + event_id.encode() + b"\r\n"
    return head + b"event: " + event.encode() + b"\r\ndata: " + data + b"\r\n\r\n"


def sse_response(events: AsyncIterator[bytes], *, headers: Mapping[str, str]) -> Stream:
    """A ``text/event-stream`` response of already encoded events."""
    return Stream(events, media_type="text/event-stream", headers={**headers, "Connection": "keep-alive"})
