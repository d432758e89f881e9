"""``GET /widget.js`` (the embeddable chat widget) and ``GET /demo`` (a page showing it)."""

from __future__ import annotations

import hashlib
import html
import re
from importlib import resources
from typing import Any

from litestar import Request, Response, get

from obdal_common.errors import ObdalError
from obdal_gateway.security_headers import page_policy
from obdal_gateway.state import Gateway

__all__ = ["demo_page", "widget_script"]

_SCRIPT = resources.files("obdal_gateway").joinpath("static/widget.js").read_bytes()
_ETAG = f'"{hashlib.sha256(_SCRIPT).hexdigest()[:20]}"'
_PUBLISHABLE = re.compile(r"^obd_pk_[A-Za-z0-9]{16}_[A-Za-z0-9]{32}$")


def _demo_policy(ancestors: str = "'none'") -> dict[str, str]:
    """The demo runs the widget from this origin and nothing inline but styles (the page's own
    and the <style> the widget puts in its shadow root); it may be framed by ``ancestors``."""
    return {
        "Content-Security-Policy": page_policy(
            script="'self'", style="'unsafe-inline'", connect="'self'", ancestors=ancestors
        )
    }


async def _framed_by(gw: Gateway, key: str) -> str:
    """Who may frame the widget's page for ``key``: the key's own allowed origins (the sites the
    widget is for), none for a key that is unknown, revoked or expired. Browsers that honour
    ``frame-ancestors`` ignore the ``X-Frame-Options: DENY`` kept for those that do not."""
    try:
        record = await gw.keys.verify(key)
    except ObdalError:
        return "'none'"
    return " ".join(["'self'", *record.allowed_origins])


@get("/widget.js", summary="The embeddable chat widget", include_in_schema=False)
async def widget_script(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Served with an ETag so browsers revalidate cheaply; short max-age so fixes ship fast."""
    headers = {"ETag": _ETAG, "Cache-Control": "public, max-age=300"}
    if request.headers.get("if-none-match") == _ETAG:
        return Response(b"", status_code=304, headers=headers)
    return Response(_SCRIPT, media_type="application/javascript; charset=utf-8", headers=headers)


_DEMO = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Obdal widget demo</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 42rem; margin: 3rem auto; padding: 0 1rem;
       line-height: 1.5 }}
code {{ background: #f2f2f2; padding: .1rem .3rem; border-radius: 4px }}
</style>
</head>
<body>
<h1>Obdal widget demo</h1>
{body}
</body>
</html>
"""

_HOW_TO = """<p>This page shows the chat widget running against this Obdal server.
Open it with a publishable key whose allowed origins include <code>{origin}</code>:</p>
<pre><code>obdal demo</code></pre>
<p>creates one (with a sample document) and prints the address, or pass your own:
<code>/demo?key=obd_pk_…</code>.</p>"""

_WITH_KEY = """<p>The chat bubble in the corner answers from this app's documents. Embed it on
your own site with one tag:</p>
<pre><code>&lt;script src="{origin}/widget.js" data-key="{key}" async&gt;&lt;/script&gt;</code></pre>
<script src="/widget.js" data-key="{key}" data-title="Obdal demo" async></script>"""


@get("/demo", summary="A page showing the widget", include_in_schema=False)
async def demo_page(request: Request[Any, Any, Any], gw: Gateway, key: str | None = None) -> Response[str]:
    origin = html.escape(f"{request.url.scheme}://{request.url.netloc}")
    policy = _demo_policy()
    if key is None:
        body = _HOW_TO.format(origin=origin)
    elif _PUBLISHABLE.match(key):
        body = _WITH_KEY.format(origin=origin, key=html.escape(key))
        policy = _demo_policy(await _framed_by(gw, key))
    else:
        return Response(
            _DEMO.format(body="<p>That is not a publishable key (<code>obd_pk_…</code>).</p>"),
            status_code=400,
            media_type="text/html",
            headers=policy,
        )
    return Response(_DEMO.format(body=body), media_type="text/html", headers=policy)
