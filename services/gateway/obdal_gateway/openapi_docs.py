"""What Litestar cannot infer for the OpenAPI document: the error body and the SSE streams.

Errors leave the gateway as ``{"error": {"code", "message"}}`` (error_responses.py)
whatever the route, so they are documented once here rather than on each
handler: Litestar would otherwise describe 400 with its own validation body and
leave 401, 403, 404, 413, 415, 429, 502, 503 and 504 out. The chat endpoints answer
``text/event-stream`` when asked to stream, which a return annotation cannot say.
A client generated from the schema (or a schema-driven fuzzer) would otherwise
reject the real answers.

The docs page itself (:class:`SwaggerDocs`) is Swagger UI from the ``swagger-ui-py`` wheel,
pinned with the gateway's dependencies and served by the gateway: nothing is loaded from a CDN,
and the page's policy (:func:`docs_router`) allows scripts from the gateway only, none inline.
"""

from __future__ import annotations

import hashlib
import html
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from litestar import Litestar, Request, Response, Router, get
from litestar.datastructures import ResponseHeader
from litestar.exceptions import NotFoundException
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    Reference,
    Schema,
)
from litestar.openapi.spec.enums import OpenAPIType

from obdal_gateway.security_headers import page_policy

__all__ = ["SwaggerDocs", "complete_openapi", "docs_router"]

_ERROR_SCHEMA = "Error"
_ALWAYS = {
    "400": "Invalid request (malformed JSON, wrong types, unknown fields, bad parameters)",
    "401": "Missing, unknown, expired or revoked key (or operator token)",
    "403": "The key's origin, scope or kind does not allow this",
    "404": "No such resource in the key's app",
    "429": "Rate limit, token budget or answers in progress exceeded (see Retry-After)",
    "503": "A dependency (NATS, a worker, MongoDB) is unavailable; retry shortly",
}
# Routes that answer with server-sent events when the body says ``"stream": true``.
_STREAMING = ("/v1/chat", "/v1/chat/completions")
# What a worker that fails mid-answer gives these routes when they do not stream.
_ANSWERING = {
    "502": "The chat worker ended its answer unfinished",
    "504": "The chat worker stopped responding mid-answer",
}
_WITH_BODY = {
    "413": "Body, file or message too large",
    "415": "Unsupported content or file type, or a compressed (Content-Encoding) body",
}


def _error_schema() -> Schema:
    detail = Schema(
        type=OpenAPIType.OBJECT,
        required=["code", "message"],
        properties={
            "code": Schema(type=OpenAPIType.STRING, description="Stable machine-readable code"),
            "message": Schema(type=OpenAPIType.STRING, description="What went wrong, for people"),
        },
    )
    return Schema(type=OpenAPIType.OBJECT, required=["error"], properties={"error": detail})


def _operations(app: Litestar) -> list[tuple[str, Operation]]:
    found: list[tuple[str, Operation]] = []
    for path, item in (app.openapi_schema.paths or {}).items():
        for operation in (item.get, item.put, item.post, item.delete, item.patch):
            if operation is not None:
                found.append((path, operation))
    return found


def _document_stream(operation: Operation) -> None:
    ok = (operation.responses or {}).get("200")
    if isinstance(ok, OpenAPIResponse):
        # Schema of one event, as SSE-aware clients and validators read the stream: event by event.
        text = Schema(type=OpenAPIType.STRING)
        events = Schema(
            type=OpenAPIType.OBJECT,
            required=["data"],
            properties={"event": text, "data": text, "id": text, "retry": Schema(type=OpenAPIType.INTEGER)},
            description="One server-sent event: its name and its JSON `data` (see the description)",
        )
        ok.content = {**(ok.content or {}), "text/event-stream": OpenAPIMediaType(schema=events)}


def complete_openapi(app: Litestar) -> None:
    """Declare the JSON error body for every error status of every operation of ``app``, and the
    event streams of the chat endpoints."""
    openapi = app.openapi_schema
    components = openapi.components if isinstance(openapi.components, Components) else Components()
    components.schemas = {**(components.schemas or {}), _ERROR_SCHEMA: _error_schema()}
    openapi.components = components
    ref = Reference(ref=f"#/components/schemas/{_ERROR_SCHEMA}")
    for path, operation in _operations(app):
        if path in _STREAMING:
            _document_stream(operation)
        statuses = dict(_ALWAYS)
        if path in _STREAMING:
            statuses |= _ANSWERING
        if operation.request_body is not None:
            statuses |= _WITH_BODY
        responses = dict(operation.responses or {})
        for status, description in statuses.items():
            existing = responses.get(status)
            if status != "400" and existing is not None:
                continue  # the route documents this status itself (e.g. /v1/status's 503)
            responses[status] = OpenAPIResponse(
                description=description, content={"application/json": OpenAPIMediaType(schema=ref)}
            )
        operation.responses = responses


def _swagger_ui(name: str) -> bytes:
    # Read from the installed distribution's files, without importing its (unneeded) Python code.
    return Path(
        str(metadata.distribution("swagger-ui-py").locate_file(f"swagger_ui/static/{name}"))
    ).read_bytes()


_JS = "application/javascript; charset=utf-8"
_ASSETS: dict[str, tuple[bytes, str]] = {
    "swagger-ui-bundle.js": (_swagger_ui("swagger-ui-bundle.js"), _JS),
    "swagger-ui.css": (_swagger_ui("swagger-ui.css"), "text/css; charset=utf-8"),
    "docs.js": (resources.files("obdal_gateway").joinpath("static/docs.js").read_bytes(), _JS),
}
_ETAGS = {name: f'"{hashlib.sha256(body).hexdigest()[:20]}"' for name, (body, _) in _ASSETS.items()}
# Swagger UI styles elements inline and draws icons as data: images; it fetches only the schema
# and, for "Try it out", this API.
_DOCS_POLICY = page_policy(
    script="'self'", style="'self' 'unsafe-inline'", img="'self' data:", connect="'self'"
)
_ASSET_HANDLER = "docs_asset"


def docs_router(path: str) -> Router:
    """The router the docs are served from, with the docs page's Content-Security-Policy."""
    return Router(
        path,
        route_handlers=[],
        include_in_schema=False,
        response_headers=[ResponseHeader(name="Content-Security-Policy", value=_DOCS_POLICY)],
    )


@get("/assets/{asset:str}", name=_ASSET_HANDLER, include_in_schema=False, sync_to_thread=False)
def _docs_asset(request: Request[Any, Any, Any], asset: str) -> Response[bytes]:
    if asset not in _ASSETS:
        raise NotFoundException()
    body, media_type = _ASSETS[asset]
    headers = {"ETag": _ETAGS[asset], "Cache-Control": "public, max-age=3600"}
    if request.headers.get("if-none-match") == _ETAGS[asset]:
        return Response(b"", status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


class SwaggerDocs(OpenAPIRenderPlugin):
    """Swagger UI at the docs root, from assets the gateway serves itself."""

    def __init__(self) -> None:
        super().__init__(path="/swagger", favicon="")  # Litestar's default favicon is on a CDN

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        def asset(name: str) -> str:
            return html.escape(request.app.route_reverse(_ASSET_HANDLER, asset=name))

        title = html.escape(str(openapi_schema["info"]["title"]))
        spec = html.escape(self.get_openapi_json_route(request))
        return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="{asset("swagger-ui.css")}">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{asset("swagger-ui-bundle.js")}"></script>
<script src="{asset("docs.js")}" data-spec="{spec}"></script>
</body>
</html>
""".encode()

    def receive_router(self, router: Router) -> None:
        router.register(_docs_asset)
