"""What Litestar cannot infer for the OpenAPI document: the error body and the SSE streams.

Errors leave the gateway as ``{"error": {"code", "message"}}`` (error_responses.py)
whatever the route, so they are documented once here rather than on each
handler: Litestar would otherwise describe 400 with its own validation body and
leave 401, 403, 404, 413, 415, 429, 502, 503 and 504 out. The chat endpoints answer
``text/event-stream`` when asked to stream, which a return annotation cannot say.
A client generated from the schema (or a schema-driven fuzzer) would otherwise
reject the real answers.
"""

from __future__ import annotations

from litestar import Litestar
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    Reference,
    Schema,
)
from litestar.openapi.spec.enums import OpenAPIType

__all__ = ["complete_openapi"]

_ERROR_SCHEMA = "Error"
_ALWAYS = {
    "400": "Invalid request (malformed JSON, wrong types, unknown fields, bad parameters)",
    "401": "Missing, unknown, expired or revoked key (or operator token)",
    "403": "The key's origin, scope or kind does not allow this",
    "404": "No such resource in the key's app",
    "429": "Rate limit or token budget exceeded (see Retry-After)",
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
