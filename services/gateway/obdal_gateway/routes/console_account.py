"""``/v1/console``: signing in to the console and out, the signed-in operator, their password.

First run: with no operator yet, ``POST /v1/console/setup`` with the operator token creates the
instance's first owner and signs them in (``obdal operators add`` does the same from a shell).
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie

from obdal_common.errors import Conflict, Forbidden, Unauthorized
from obdal_common.schemas import ConsoleSession, OperatorRecord
from obdal_gateway.clients import client_ip
from obdal_gateway.console_auth import same_origin, signed_in
from obdal_gateway.console_sessions import COOKIE, SignedIn
from obdal_gateway.operators import ALL_APPS, public_operator
from obdal_gateway.state import Gateway

__all__ = ["CONSOLE_ACCOUNT_HANDLERS"]

_Text = Annotated[str, msgspec.Meta(max_length=1024)]


class SignInBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    email: _Text
    password: _Text


class SetupBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    admin_token: _Text
    email: _Text
    password: _Text
    name: Annotated[str, msgspec.Meta(max_length=200)] = ""


class PasswordBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    current_password: _Text
    new_password: _Text


def _cookie(request: Request[Any, Any, Any], gw: Gateway, value: str, *, max_age: int) -> Cookie:
    return Cookie(
        key=COOKIE,
        value=value,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https" or gw.settings.console_secure_cookie,
        max_age=max_age,
    )


def _me(operator: OperatorRecord, session: ConsoleSession, gw: Gateway) -> dict[str, Any]:
    return {
        "operator": public_operator(operator),
        "csrf_token": session.csrf_token,
        "session": {
            "signed_in_at": session.created_at.isoformat(),
            "expires_at": (session.created_at + gw.console_sessions.absolute).isoformat(),
            "idle_minutes": int(gw.console_sessions.idle.total_seconds() // 60),
        },
    }


async def _signed_in_response(
    request: Request[Any, Any, Any], gw: Gateway, operator: OperatorRecord, *, status_code: int = 200
) -> Response[dict[str, Any]]:
    if previous := request.cookies.get(COOKIE):
        await gw.console_sessions.end(previous)  # a browser holds one session: the new one
    cookie, session = await gw.console_sessions.start(operator)
    max_age = int(gw.console_sessions.absolute.total_seconds())
    return Response(
        _me(operator, session, gw),
        status_code=status_code,
        cookies=[_cookie(request, gw, cookie, max_age=max_age)],
    )


def _same_site_only(request: Request[Any, Any, Any]) -> None:
    # Login CSRF: another site must not sign a browser in as someone else.
    if not same_origin(request):
        raise Forbidden("this request came from another site", code="csrf_failed")


@post("/v1/console/sign-in", summary="Sign in to the console (sets its session cookie)", tags=["console"])
async def sign_in(request: Request[Any, Any, Any], gw: Gateway, data: SignInBody) -> Response[dict[str, Any]]:
    """A wrong e-mail and a wrong password get the same answer; after repeated failures the
    account, or the address, waits (429 ``sign_in_throttled``, with when to retry)."""
    _same_site_only(request)
    client = client_ip(request.scope, trusted_proxies=gw.settings.trusted_proxies)
    await gw.signin_throttle.attempt(data.email, client)  # counted before the password is checked
    operator = await gw.operators.verify(data.email, data.password)
    if operator is None:
        await gw.audit.record(
            "console.sign_in_failed", app_id=None, actor=None, detail={"client_ip": client or ""}
        )
        raise Unauthorized("wrong e-mail or password", code="invalid_credentials")
    await gw.signin_throttle.succeeded(data.email, client)
    await gw.audit.record(
        "console.signed_in", app_id=None, actor=operator.operator_id, detail={"client_ip": client or ""}
    )
    return await _signed_in_response(request, gw, operator)


@post(
    "/v1/console/setup", status_code=201, summary="Create the first owner (operator token)", tags=["console"]
)
async def setup(request: Request[Any, Any, Any], gw: Gateway, data: SetupBody) -> Response[dict[str, Any]]:
    """Only while no operator exists: the operator token proves whoever installed Obdal."""
    _same_site_only(request)
    if not hmac.compare_digest(data.admin_token.encode(), gw.admin_token.encode()):
        raise Unauthorized("that is not this instance's operator token", code="invalid_admin_token")
    if gw.operators.any():
        raise Conflict("the console is set up already: sign in", code="setup_done")
    operator = await gw.operators.create(
        email=data.email, name=data.name, password=data.password, roles={ALL_APPS: "owner"}
    )
    await gw.audit.record(
        "operator.created",
        app_id=None,
        actor="operator",
        target=operator.operator_id,
        detail={"role": "owner"},
    )
    return await _signed_in_response(request, gw, operator, status_code=201)


@get("/v1/console/me", summary="The signed-in operator, their roles and the CSRF token", tags=["console"])
async def me(request: Request[Any, Any, Any], gw: Gateway) -> dict[str, Any]:
    signed = await _required(request, gw)
    return _me(signed.operator, signed.session, gw)


@post("/v1/console/sign-out", status_code=200, summary="End this console session", tags=["console"])
async def sign_out(request: Request[Any, Any, Any], gw: Gateway) -> Response[dict[str, Any]]:
    try:
        signed = await signed_in(request, gw)
    except Unauthorized:
        signed = None  # ended already: only the cookie is left to clear
    if signed is not None:
        await gw.console_sessions.end(signed.token)
        await gw.audit.record("console.signed_out", app_id=None, actor=signed.operator.operator_id)
    return Response({"signed_out": True}, cookies=[_cookie(request, gw, "", max_age=0)])


@post("/v1/console/password", summary="Change your password (ends your other sessions)", tags=["console"])
async def change_password(
    request: Request[Any, Any, Any], gw: Gateway, data: PasswordBody
) -> Response[dict[str, Any]]:
    signed = await _required(request, gw)
    # Throttled as sign-in is: a stolen session must not guess the password it would keep.
    client = client_ip(request.scope, trusted_proxies=gw.settings.trusted_proxies)
    await gw.signin_throttle.attempt(signed.operator.email, client)
    operator = await gw.operators.verify(signed.operator.email, data.current_password)
    if operator is None or operator.operator_id != signed.operator.operator_id:
        raise Forbidden("your current password is not that", code="invalid_credentials")
    await gw.signin_throttle.succeeded(signed.operator.email, client)
    operator = await gw.operators.set_password(operator, data.new_password)
    await gw.console_sessions.end_all(operator.operator_id)
    await gw.audit.record(
        "operator.password_changed",
        app_id=None,
        actor=operator.operator_id,
        target=operator.operator_id,
    )
    return await _signed_in_response(request, gw, operator)


async def _required(request: Request[Any, Any, Any], gw: Gateway) -> SignedIn:
    signed = await signed_in(request, gw)
    if signed is None:
        raise Unauthorized("sign in to the console first", code="console_session_required")
    return signed


CONSOLE_ACCOUNT_HANDLERS = [sign_in, setup, me, sign_out, change_password]
