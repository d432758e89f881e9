"""The console's credential: a session cookie, its CSRF token, and the operator's role on an app.

A console request is an ordinary API request with the ``obdal_console`` cookie instead of a key:

- on the tenant API (``/v1/files``, ``/v1/sessions``, ``/v1/usage``…) it names its app in the
  ``Obdal-App`` header (a GET may use ``?app_id=`` instead, for download links); the route's
  scope must be one of the operator's role there (``obdal_gateway.operators.ROLE_SCOPES``), and
  the principal's key id is the operator's id, so usage, rate limits and the audit log name the
  operator;
- on the admin API the route declares the least role it needs, ``opt={"role": ...}``, and where
  its app is: the path's ``app_id`` (the default), the app of the path's ``key_id``
  (``"app_from": "key"``), the optional ``app_id`` query parameter (``"query"``), or none: the
  role is then needed on every app (``"*"``). ``"app_from": "any"`` lets any operator in, for a
  handler that shows each only their own (the apps list).

Every state-changing request with the cookie must carry the session's ``X-CSRF-Token`` and, if the
browser sent an ``Origin``, come from the gateway's own origin. The cookie is ``SameSite=Strict``
too, so a cross-site page's requests carry no cookie in the first place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import Provide

from obdal_common.errors import BadRequest, Forbidden, NotFound, Unauthorized
from obdal_common.ids import is_id
from obdal_common.schemas import OperatorRecord, OperatorRole
from obdal_gateway.console_sessions import COOKIE, SignedIn, csrf_matches
from obdal_gateway.operators import ALL_APPS, ROLE_SCOPES, at_least, role_on

if TYPE_CHECKING:
    from obdal_gateway.state import Gateway

__all__ = [
    "APP_HEADER",
    "CSRF_HEADER",
    "Caller",
    "caller_dependency",
    "check_console_admin",
    "console_app_role",
    "same_origin",
    "signed_in",
]

APP_HEADER: Final = "obdal-app"
CSRF_HEADER: Final = "x-csrf-token"
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_STATE_KEY: Final = "obdal_signed_in"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who called an admin route: the operator token (``operator is None``) or a console operator."""

    operator: OperatorRecord | None

    @property
    def actor(self) -> str:
        """The audit log's actor: the operator's id, or ``operator`` for the operator token."""
        return self.operator.operator_id if self.operator else "operator"

    def may_see(self, app_id: str) -> bool:
        return self.operator is None or role_on(self.operator.roles, app_id) is not None


def same_origin(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    origin = connection.headers.get("origin")
    if origin is None:
        return True  # not a browser's cross-origin request (browsers send Origin on those)
    parts = urlsplit(origin)
    return parts.netloc == connection.headers.get("host", "") and parts.scheme in ("http", "https")


async def signed_in(connection: ASGIConnection[Any, Any, Any, Any], gw: Gateway) -> SignedIn | None:
    """The request's live console session, or ``None`` without a cookie. 401 for an ended one."""
    cached: SignedIn | None = connection.scope.get("state", {}).get(_STATE_KEY)
    if cached is not None:
        return cached
    cookie = connection.cookies.get(COOKIE)
    if not cookie:
        return None
    operator_id = cookie.partition(".")[0]
    operator = await gw.operators.get(operator_id)
    session = await gw.console_sessions.resolve(cookie, operator)
    if operator is None or session is None:
        raise Unauthorized("your console session has ended; sign in again", code="console_session_ended")
    if connection.scope.get("method") not in _SAFE_METHODS:
        if not same_origin(connection):
            raise Forbidden("this request came from another site", code="csrf_failed")
        if not csrf_matches(session, connection.headers.get(CSRF_HEADER)):
            raise Forbidden(
                "this request lacks the console's CSRF token (X-CSRF-Token); reload the page",
                code="csrf_failed",
            )
    found = SignedIn(operator=operator, session=session, token=cookie)
    connection.scope.setdefault("state", {})[_STATE_KEY] = found
    return found


def _require(operator: OperatorRecord, app_id: str, least: OperatorRole) -> OperatorRole:
    role = role_on(operator.roles, app_id)
    if role is None:
        raise Forbidden("you have no role on this app", code="not_an_operator_of_app")
    if not at_least(role, least):
        raise Forbidden(
            f"your role on this app ({role}) may not do this; it needs {least}", code="role_forbids"
        )
    return role


async def console_app_role(
    request: Request[Any, Any, Any], gw: Gateway, signed: SignedIn, *, scope: str
) -> tuple[str, OperatorRole]:
    """The app a console request to the tenant API names, and the operator's role there, which
    must hold ``scope``."""
    # A download link (an NDJSON export) cannot send a header: a GET may name the app in its query.
    app_id = request.headers.get(APP_HEADER) or (
        request.query_params.get("app_id") if request.method == "GET" else None
    )
    if not app_id:
        raise BadRequest(
            "console requests name their app in the Obdal-App header (a GET: or ?app_id=)",
            code="app_required",
        )
    if not is_id("app", app_id):
        raise BadRequest("Obdal-App is not an app id", code="invalid_app_id")
    role = _require(signed.operator, app_id, "viewer")
    if scope not in ROLE_SCOPES[role]:
        raise Forbidden(f"your role on this app ({role}) may not do this", code="role_forbids")
    if signed.operator.roles.get(app_id) is None:
        await gw.apps.get(app_id)  # an owner of every app: 404 for one that does not exist
    return app_id, role


async def check_console_admin(connection: ASGIConnection[Any, Any, Any, Any], gw: Gateway) -> Caller:
    """A console operator on an admin route: signed in, with the role the route declares on its app."""
    signed = await signed_in(connection, gw)
    if signed is None:
        raise Unauthorized(
            "admin endpoints need 'Authorization: Bearer <operator token>' or a console session",
            code="invalid_admin_token",
        )
    opt = connection.route_handler.opt
    least: OperatorRole = opt.get("role", "owner")
    where = opt.get("app_from", "path")
    operator = signed.operator
    if where == "any":
        return Caller(operator)
    app_id: str | None
    if where == "path":
        app_id = connection.path_params["app_id"]
    elif where == "key":
        record = await gw.keys.get(str(connection.path_params["key_id"]))
        if record is None:
            raise NotFound(f"no key {connection.path_params['key_id']}", code="key_not_found")
        app_id = record.app_id
    elif where == "query":
        # Every app_id the query names: the handler may read another one than the first.
        for named in connection.query_params.getall("app_id", []) or [ALL_APPS]:
            _require(operator, named or ALL_APPS, least)
        return Caller(operator)
    else:
        app_id = None
    _require(operator, app_id or ALL_APPS, least)
    return Caller(operator)


def _caller(request: Request[Any, Any, Any]) -> Caller:
    caller: Caller = request.scope["state"]["obdal_caller"]
    return caller


def caller_dependency() -> dict[str, Provide]:
    """The admin routers' ``caller`` dependency: who their guard let in."""
    return {"caller": Provide(_caller, sync_to_thread=False)}
