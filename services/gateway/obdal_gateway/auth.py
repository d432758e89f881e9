"""Who is calling: the key from the request, its origin policy, scopes and rate limit.

Every refusal is audited (reason, key id, origin, client IP; never the key).

Routes declare what they need rather than checking it themselves (docs/architecture.md,
"Gateway: how a route declares what it needs"): a tenant route names its scope,
``opt={"scope": "files:read"}``, and takes a ``principal: Principal`` parameter, which the
app-wide ``principal`` dependency (:func:`provide_principal`) resolves by checking the key
for that scope; the admin routers and ``/metrics`` carry a guard (:func:`operator_guard`,
:func:`metrics_guard`). :func:`check_declarations` refuses, at start-up, a route that takes a
principal without naming a known scope or names a scope it would never check.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from ipaddress import IPv6Address, ip_address, ip_network
from typing import TYPE_CHECKING, Any

from litestar import Litestar, Request
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.exceptions import ImproperlyConfiguredException
from litestar.handlers import BaseRouteHandler
from litestar.routes import HTTPRoute
from opentelemetry import trace
from redis.exceptions import RedisError

from obdal_common.budgets import seconds_to_midnight, tokens_used
from obdal_common.errors import Forbidden, ObdalError, RateLimited, Unauthorized
from obdal_common.hooks import budget_reached
from obdal_common.schemas import KeyRecord, OperatorRecord
from obdal_gateway.clients import client_ip
from obdal_gateway.console_auth import Caller, check_console_admin, console_app_role, signed_in
from obdal_gateway.console_sessions import COOKIE
from obdal_gateway.cors import add_response_headers, allow_origin
from obdal_gateway.keys import ALL_SCOPES, PUBLISHABLE_SCOPES, parse_key
from obdal_gateway.operators import ROLE_SCOPES
from obdal_gateway.origins import origin_allowed

if TYPE_CHECKING:
    from obdal_gateway.state import Gateway

__all__ = [
    "Principal",
    "authenticate",
    "bearer_matches",
    "check_budget",
    "check_declarations",
    "check_operator",
    "metrics_guard",
    "operator_guard",
    "presented_key",
    "principal_limited_as",
    "provide_principal",
    "required_scope",
]

# Refusals audited per second per client, so a flood of bad keys cannot flood the audit log, nor
# use up an allowance other clients' refusals need. Clients counted per second are bounded too.
_AUDIT_REFUSALS_PER_CLIENT_S = 20
_AUDIT_CLIENTS_PER_S = 1000


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: one key of one app, or a console operator acting on one app
    (``operator`` set; ``key`` then stands for the operator, its id the operator's)."""

    key: KeyRecord
    operator: OperatorRecord | None = None

    @property
    def app_id(self) -> str:
        return self.key.app_id

    @property
    def key_id(self) -> str:
        return self.key.key_id


def _bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (maybe empty), or ``None`` for another scheme."""
    scheme, _, value = connection.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def presented_key(request: Request[Any, Any, Any], body_key: str | None = None) -> str | None:
    """The key from ``Authorization: Bearer``, else the body's ``api_key``, else (GET only, as
    documented) the query's ``api_key``: a request that changes something never takes its key from
    a URL, which ends up in logs and browser history."""
    query_key = request.query_params.get("api_key") if request.method == "GET" else None
    return _bearer(request) or body_key or query_key or None


def _check_origin(record: KeyRecord, origin: str | None) -> None:
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


def _client_group(address: str | None) -> str:
    """What one client is for the audit allowance: its address; for IPv6 its /64, which one host
    usually holds whole (so it cannot pose as millions of clients)."""
    try:
        parsed = ip_address(address or "")
    except ValueError:
        return address or ""
    if isinstance(parsed, IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


class _RefusalAudit:
    """A per-second allowance of audited refusals for each client."""

    def __init__(self) -> None:
        self._second = 0
        self._counts: dict[str, int] = {}

    def admit(self, client: str | None) -> bool:
        second = int(time.monotonic())
        if second != self._second:
            self._second = second
            self._counts.clear()
        group = _client_group(client)
        count = self._counts.get(group)
        if count is None and len(self._counts) >= _AUDIT_CLIENTS_PER_S:
            return False
        self._counts[group] = (count or 0) + 1
        return (count or 0) < _AUDIT_REFUSALS_PER_CLIENT_S


_refusals = _RefusalAudit()


async def _audit_refusal(
    request: Request[Any, Any, Any], gw: Gateway, error: ObdalError, key: str | None, record: KeyRecord | None
) -> None:
    client = client_ip(request.scope, trusted_proxies=gw.settings.trusted_proxies)
    if not _refusals.admit(client):
        return
    parsed = parse_key(key) if key else None
    if record is None and parsed is not None:
        # A well-formed key of a known id: attribute the refusal to its app. From memory only, so
        # unknown and known ids cost the same here too (verify has just read KV for a refusal).
        record = gw.keys.cached(parsed[1])
    detail = {"reason": error.code, "path": request.url.path}
    if request.headers.get("origin"):
        detail["origin"] = request.headers["origin"][:200]
    if client:
        detail["client_ip"] = client
    await gw.audit.record(
        "auth.refused",
        app_id=record.app_id if record else None,
        actor=parsed[1] if parsed else None,
        target=request.url.path,
        detail=detail,
    )


async def authenticate(
    request: Request[Any, Any, Any],
    gw: Gateway,
    *,
    scope: str,
    body_key: str | None = None,
    limit_as: str | None = None,
) -> Principal:
    """Verify the key, its origin policy, ``scope`` and rate limit; raise 401/403/429 otherwise.
    Without a key, a console session cookie (:mod:`obdal_gateway.console_auth`) may stand for one.
    ``limit_as`` counts the request in a rate-limit bucket of its own (same limit), so a route the
    widget calls on every page load does not use up the key's questions."""
    key = presented_key(request, body_key)
    record: KeyRecord | None = None
    origin = request.headers.get("origin")
    if not key and request.cookies.get(COOKIE):  # an empty cookie is no session: the key path's 401
        return await _console_principal(request, gw, scope=scope)
    try:
        if not key:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key")
        record = await gw.keys.verify(key)
        # The key id is not a secret (it is the key's public middle part); the key never goes to a span.
        span = trace.get_current_span()
        span.set_attribute("obdal.app_id", record.app_id)
        span.set_attribute("obdal.key_id", record.key_id)
        _check_origin(record, origin)
        # A publishable key stored with a read scope (before they were refused at write) holds
        # only its write-only ones.
        if scope not in record.scopes or (record.kind == "publishable" and scope not in PUBLISHABLE_SCOPES):
            raise Forbidden(f"this key lacks the '{scope}' scope", code="insufficient_scope")
    except (Unauthorized, Forbidden) as exc:
        await _audit_refusal(request, gw, exc, key, record)
        raise
    if origin is not None:
        allow_origin(request.scope, origin)
    bucket = record.key_id if limit_as is None else f"{record.key_id}:{limit_as}"
    await _limit(request, gw, bucket, record.rate_limit_rpm or gw.settings.default_rate_limit_rpm)
    await gw.keys.touch(record.key_id)
    return Principal(key=record)


async def _limit(request: Request[Any, Any, Any], gw: Gateway, who: str, rpm: int) -> None:
    decision = await gw.limiter.hit(who, rpm)
    add_response_headers(request.scope, decision.headers())
    if not decision.allowed:
        raise RateLimited(
            f"rate limit of {decision.limit} requests per minute exceeded",
            code="rate_limited",
            retry_after=decision.retry_after_s,
        )


async def _console_principal(request: Request[Any, Any, Any], gw: Gateway, *, scope: str) -> Principal:
    signed = await signed_in(request, gw)
    assert signed is not None  # the cookie is there
    app_id, role = await console_app_role(request, gw, signed, scope=scope)
    operator = signed.operator
    await _limit(request, gw, operator.operator_id, gw.settings.default_rate_limit_rpm)
    stand_in = KeyRecord(
        key_id=operator.operator_id,
        app_id=app_id,
        name=operator.email,
        kind="secret",
        scopes=tuple(sorted(ROLE_SCOPES[role])),
        allowed_origins=(),
        secret_hash="",
        created_at=operator.created_at,
    )
    return Principal(key=stand_in, operator=operator)


def required_scope(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The scope the matched route declares: ``opt={"scope": ...}``."""
    scope: str = connection.route_handler.opt["scope"]
    return scope


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    """The app-wide ``principal`` dependency: the request's key, checked for its route's scope.

    Litestar resolves dependencies once the body is read and before it validates the route's
    own parameters, so a caller without a valid key is refused (401/403/429) before its query
    is judged (400). A route whose key may be in its body (``POST /v1/chat``) provides its own
    ``principal``, from the validated body.
    """
    gw: Gateway = request.app.state.gateway
    return await authenticate(request, gw, scope=required_scope(request))


def principal_limited_as(bucket: str) -> Provide:
    """A route's ``principal`` counted in a rate-limit bucket of its own (same limit), for what the
    widget calls on every start or question besides the question itself (its settings, a
    proof-of-work challenge, a verified user's conversation): they must not use up its questions."""

    async def provide(request: Request[Any, Any, Any]) -> Principal:
        gw: Gateway = request.app.state.gateway
        return await authenticate(request, gw, scope=required_scope(request), limit_as=bucket)

    return Provide(provide)


async def check_budget(gw: Gateway, principal: Principal) -> None:
    """Refuse (429) when the key spent its daily token budget. Fails open without Redis."""
    budget = principal.key.token_budget
    if budget is None:
        return
    try:
        used = await tokens_used(gw.redis, principal.key_id)
    except RedisError:  # Redis down: budgets fail open like rate limits (docs/security.md)
        return
    if used >= budget:
        data, event_id = budget_reached(key_id=principal.key_id, token_budget=budget, tokens_used=used)
        await gw.audit.hook("budget.reached", app_id=principal.app_id, data=data, event_id=event_id)
        raise RateLimited(
            f"this key used its daily budget of {budget} tokens; it resets at 00:00 UTC",
            code="token_budget_exhausted",
            retry_after=seconds_to_midnight(),
        )


def bearer_matches(connection: ASGIConnection[Any, Any, Any, Any], token: str) -> bool:
    """Whether the request carries ``Authorization: Bearer <token>`` (compared in constant time)."""
    presented = _bearer(connection)
    return presented is not None and hmac.compare_digest(presented.encode(), token.encode())


def check_operator(connection: ASGIConnection[Any, Any, Any, Any], token: str) -> None:
    """Require the operator token on admin endpoints."""
    if not bearer_matches(connection, token):
        raise Unauthorized(
            "admin endpoints need 'Authorization: Bearer <operator token>'", code="invalid_admin_token"
        )


async def operator_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard of the admin routers: the operator token, or a console session whose operator has the
    role the route declares (:func:`obdal_gateway.console_auth.check_console_admin`). Runs before
    the body is read, so no admin input is parsed unauthenticated."""
    gw: Gateway = connection.app.state.gateway
    if _bearer(connection) is None and COOKIE in connection.cookies:
        caller = await check_console_admin(connection, gw)
    else:
        check_operator(connection, gw.admin_token)
        caller = Caller(None)
    connection.scope.setdefault("state", {})["obdal_caller"] = caller


def metrics_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard of ``GET /metrics``: scrapers send ``OBDAL_METRICS_TOKEN`` as a bearer token, or the
    operator token when that is unset; open only with ``OBDAL_METRICS_OPEN``."""
    gw: Gateway = connection.app.state.gateway
    if gw.settings.metrics_open:
        return
    token = gw.settings.metrics_token
    if not bearer_matches(connection, token.get_secret_value() if token else gw.admin_token):
        raise Unauthorized(
            "/metrics needs 'Authorization: Bearer <metrics token>' (the operator token if "
            "OBDAL_METRICS_TOKEN is unset)",
            code="invalid_metrics_token",
        )


def check_declarations(app: Litestar) -> None:
    """Refuse to build an app with a route whose declaration and signature disagree: a route that
    takes a ``principal`` must name a known scope, and one that names a scope must take the
    principal, or nothing would check its key."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            scope = handler.opt.get("scope")
            takes_principal = "principal" in handler.parsed_fn_signature.parameters
            if scope is None and not takes_principal:
                continue
            if not takes_principal:
                problem = f"declares the scope {scope!r} but takes no 'principal': nothing checks its key"
            elif scope not in ALL_SCOPES:
                problem = f"takes a 'principal' but declares no known scope (opt={{'scope': ...}}): {scope!r}"
            else:
                continue
            raise ImproperlyConfiguredException(f"route {route.path} ({handler.handler_name}) {problem}")
