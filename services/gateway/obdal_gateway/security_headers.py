"""Headers that limit what a browser does with any of the gateway's responses.

Every response says ``X-Content-Type-Options: nosniff`` (a JSON error or an upload's echo is
never run as a script or rendered as HTML), may not be framed (``X-Frame-Options: DENY``, and
``frame-ancestors 'none'``; the console's widget preview alone lets the console frame it) and
carries a Content-Security-Policy: by default one that allows nothing, which is right for
everything but the pages. A page declares the sources it needs with
:func:`page_policy` as its own ``Content-Security-Policy`` header, which the middleware keeps.
The widget script is embedded in customers' pages: those pages' own policies govern it.

Over HTTPS (the gateway's own TLS, ``OBDAL_TLS_CERT``) every response also carries
``Strict-Transport-Security``: browsers then never try the host over plain HTTP for a year. Only
then: a browser ignores the header on plain HTTP, and behind a TLS-terminating proxy the proxy
sends it (deploy/Caddyfile), since only the proxy knows the client's connection was HTTPS.
"""

from __future__ import annotations

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HSTS", "SecurityHeaders", "page_policy"]

# No <base>, whatever the page allows; no framing (clickjacking) unless a page says by whom.
_ALWAYS = "base-uri 'none'"


def page_policy(
    *,
    script: str = "'none'",
    style: str = "'none'",
    img: str = "'none'",
    connect: str = "'none'",
    frame: str = "'none'",
    form: str = "'none'",
    ancestors: str = "'none'",
) -> str:
    """A Content-Security-Policy allowing only the given sources (``'self'``, ``data:``, hashes):
    what the page may load, frame and post its forms to, and who may frame it (``ancestors``;
    such a page also sends its own ``X-Frame-Options``, which the middleware keeps)."""
    return (
        f"default-src 'none'; script-src {script}; style-src {style}; img-src {img}; "
        f"connect-src {connect}; frame-src {frame}; form-action {form}; frame-ancestors {ancestors}; "
        f"{_ALWAYS}"
    )


_DEFAULT_POLICY = page_policy()
# A year, the host alone: subdomains may be other servers, which this gateway does not speak for.
HSTS = "max-age=31536000"


class SecurityHeaders(ASGIMiddleware):
    """Adds the headers above to every HTTP response (run around routing, so 404s get them too)."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                headers["X-Content-Type-Options"] = "nosniff"
                if "x-frame-options" not in headers:
                    headers["X-Frame-Options"] = "DENY"
                if "content-security-policy" not in headers:
                    headers["Content-Security-Policy"] = _DEFAULT_POLICY
                if scope["scheme"] == "https":
                    headers["Strict-Transport-Security"] = HSTS
            await send(message)

        await next_app(scope, receive, send_with_headers)
