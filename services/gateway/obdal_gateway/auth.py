"""Who is calling: the key from the request, its origin policy and its scopes."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from opentelemetry import trace

from obdal_common.errors import Forbidden, Unauthorized
from obdal_common.schemas import KeyRecord
from obdal_gateway.keys import KeyRegistry
from obdal_gateway.origins import origin_allowed

__all__ = ["Principal", "authenticate", "check_operator", "presented_key"]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: one key of one app."""

    key: KeyRecord

    @property
    def app_id(self) -> str:
        return self.key.app_id

    @property
    def key_id(self) -> str:
        return self.key.key_id


def presented_key(request: Request[Any, Any, Any], body_key: str | None = None) -> str | None:
    """The key from ``Authorization: Bearer``, else the body's or query's ``api_key``."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if body_key:
        return body_key
    query_key = request.query_params.get("api_key")
    return query_key or None


async def authenticate(
    request: Request[Any, Any, Any],
    keys: KeyRegistry,
    *,
    scope: str,
    body_key: str | None = None,
) -> Principal:
    """Verify the key, its origin policy and ``scope``; raise 401/403 otherwise."""
    key = presented_key(request, body_key)
    if not key:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key")
    record = await keys.verify(key)
    origin = request.headers.get("origin")
    # The key id is not a secret (it is the key's public middle part); the key itself never goes to a span.
    span = trace.get_current_span()
    span.set_attribute("obdal.app_id", record.app_id)
    span.set_attribute("obdal.key_id", record.key_id)
    if record.kind == "publishable":
        if not record.allowed_origins:
            raise Forbidden(
                "this publishable key has no allowed origins; add some to use it",
                code="origin_not_allowed",
            )
        if origin is None:
            raise Forbidden(
                "publishable keys are for browsers: the request must carry an Origin header",
                code="origin_required",
            )
    if origin is not None and not origin_allowed(origin, record.allowed_origins):
        raise Forbidden("this origin is not allowed for this key", code="origin_not_allowed")
    if scope not in record.scopes:
        raise Forbidden(f"this key lacks the '{scope}' scope", code="insufficient_scope")
    return Principal(key=record)


def check_operator(connection: ASGIConnection[Any, Any, Any, Any], token: str) -> None:
    """Require the operator token on admin endpoints."""
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
        raise Unauthorized(
            "admin endpoints need 'Authorization: Bearer <operator token>'", code="invalid_admin_token"
        )
