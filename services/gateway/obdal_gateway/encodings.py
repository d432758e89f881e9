"""Request bodies are read as sent: a body in a content coding (gzip, br, ...) is refused.

Decoding it would be a decompression bomb's way in; passing it on would reach the JSON
or multipart parser as bytes it cannot read and come back as a misleading 400. RFC 9110
answers 415, and RFC 7694 names what is accepted in ``Accept-Encoding``.
"""

from __future__ import annotations

from litestar.datastructures import Headers
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from obdal_gateway.error_responses import send_error

__all__ = ["IdentityBodyMiddleware"]

_IDENTITY = ("", "identity")


class IdentityBodyMiddleware(ASGIMiddleware):
    """Middleware answering 415 to request bodies whose ``Content-Encoding`` is not ``identity``.

    It answers itself, before any route reads the body, with the error body every route uses.
    """

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        headers = Headers.from_scope(scope)
        coding = headers.get("content-encoding", "").strip().lower()
        has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
        if coding not in _IDENTITY and has_body:
            await send_error(
                send,
                415,
                "unsupported_content_encoding",
                f"compressed request bodies are not accepted (Content-Encoding: {coding}); "
                "send the body uncompressed",
                headers=[(b"accept-encoding", b"identity")],
            )
            return
        await next_app(scope, receive, send)
