"""``/v1/admin/operators``: who may use the console, and their role on each app.

An app's owners grant and take back roles on that app; only owners of every app (``"*"``) grant
``"*"``, remove an account or reset someone's password. Each operator sees, and changes, only
the roles on apps they own. Removing an operator or resetting their password ends their sessions.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import delete, get, patch, post

from obdal_common.errors import BadRequest, Conflict, Forbidden
from obdal_common.ids import is_id
from obdal_common.schemas import OperatorRecord, OperatorRole
from obdal_gateway.console_auth import Caller
from obdal_gateway.operators import ALL_APPS, public_operator, role_on
from obdal_gateway.routes.admin_apps import app_or_404
from obdal_gateway.state import Gateway

__all__ = ["OPERATOR_HANDLERS"]

_Roles = Annotated[dict[str, OperatorRole], msgspec.Meta(max_length=1000)]


class NewOperator(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    email: Annotated[str, msgspec.Meta(max_length=254)]
    password: Annotated[str, msgspec.Meta(max_length=1024)]
    roles: _Roles
    name: Annotated[str, msgspec.Meta(max_length=200)] = ""


class OperatorChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``roles`` replaces the roles on the apps the caller owns (``null`` for a role: none)."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    roles: Annotated[dict[str, OperatorRole | None], msgspec.Meta(max_length=1000)] | None = None
    password: Annotated[str, msgspec.Meta(max_length=1024)] | None = None


def _owns(caller: Caller, app_id: str) -> bool:
    return caller.operator is None or (
        role_on(caller.operator.roles, app_id) == "owner"
        and (app_id != ALL_APPS or caller.operator.roles.get(ALL_APPS) == "owner")
    )


def _owner_of_all(caller: Caller) -> bool:
    return _owns(caller, ALL_APPS)


async def _checked_roles(gw: Gateway, caller: Caller, roles: dict[str, Any]) -> None:
    for app_id in roles:
        if app_id != ALL_APPS:
            if not is_id("app", app_id):
                raise BadRequest(f"{app_id!r} is not an app id (or '*' for every app)", code="invalid_app_id")
            await app_or_404(gw, app_id)
        if not _owns(caller, app_id):
            where = "every app" if app_id == ALL_APPS else f"the app {app_id}"
            raise Forbidden(f"only owners of {where} grant roles there", code="role_forbids")


def _visible(caller: Caller, operator: OperatorRecord) -> dict[str, Any] | None:
    """The operator with only the roles on apps the caller owns; ``None`` if they share none."""
    if _owner_of_all(caller):
        return public_operator(operator)
    roles = {a: r for a, r in operator.roles.items() if _owns(caller, a)}
    if not roles and not (caller.operator and caller.operator.operator_id == operator.operator_id):
        return None
    return {**public_operator(operator), "roles": roles}


@get("/operators", summary="Console operators (those on apps you own)", opt={"app_from": "any"})
async def list_operators(gw: Gateway, caller: Caller) -> dict[str, Any]:
    shown = (_visible(caller, o) for o in gw.operators.all())
    return {"operators": [o for o in shown if o is not None]}


@post("/operators", status_code=201, summary="Add a console operator", opt={"app_from": "any"})
async def add_operator(gw: Gateway, caller: Caller, data: NewOperator) -> dict[str, Any]:
    """The password is the operator's first; give it to them by a channel of your choosing."""
    if not data.roles:
        raise BadRequest("give the operator a role on at least one app", code="invalid_roles")
    await _checked_roles(gw, caller, data.roles)
    operator = await gw.operators.create(
        email=data.email, name=data.name, password=data.password, roles=dict(data.roles)
    )
    await gw.audit.record(
        "operator.created",
        app_id=None,
        actor=caller.actor,
        target=operator.operator_id,
        detail={app: role for app, role in data.roles.items()},
    )
    return public_operator(operator)


@patch(
    "/operators/{operator_id:str}",
    summary="Rename an operator, change their roles or reset their password",
    opt={"app_from": "any"},
)
async def change_operator(
    gw: Gateway, caller: Caller, operator_id: str, data: OperatorChange
) -> dict[str, Any]:
    operator = await gw.operators.existing(operator_id)
    if _visible(caller, operator) is None:
        raise Forbidden("this operator has no role on an app you own", code="role_forbids")
    # Every check before the first write: a refused request changes nothing.
    if data.password is not None and not _owner_of_all(caller):
        raise Forbidden("only owners of every app reset a password", code="role_forbids")
    detail: dict[str, str] = {}
    if data.roles is not None:
        await _checked_roles(gw, caller, data.roles)
        roles = {a: r for a, r in operator.roles.items() if a not in data.roles}
        roles.update({a: r for a, r in data.roles.items() if r is not None})
        if operator.roles.get(ALL_APPS) == "owner" and roles.get(ALL_APPS) != "owner":
            _keep_an_owner(gw, operator)
        operator = msgspec.structs.replace(operator, roles=roles)
        detail.update({a: r or "none" for a, r in data.roles.items()})
    if data.name is not None:
        # As on creation: a blank name is the e-mail.
        operator = msgspec.structs.replace(operator, name=data.name.strip() or operator.email)
    if data.password is not None:
        # Stores the other changes too, once the new password has passed its checks.
        operator = await gw.operators.set_password(operator, data.password)
        await gw.console_sessions.end_all(operator.operator_id)
        detail["password"] = "reset"
    else:
        await gw.operators.put(operator)
    await gw.audit.record(
        "operator.changed", app_id=None, actor=caller.actor, target=operator_id, detail=detail
    )
    return public_operator(operator)


def _keep_an_owner(gw: Gateway, leaving: OperatorRecord) -> None:
    others = [o for o in gw.operators.all() if o.operator_id != leaving.operator_id]
    if not any(o.roles.get(ALL_APPS) == "owner" for o in others):
        raise Conflict("the last owner of every app cannot leave; make another one first", code="last_owner")


@delete(
    "/operators/{operator_id:str}",
    status_code=200,
    summary="Remove an operator (ends their sessions)",
    opt={"app_from": "any"},
)
async def remove_operator(gw: Gateway, caller: Caller, operator_id: str) -> dict[str, Any]:
    if not _owner_of_all(caller):
        raise Forbidden(
            "only owners of every app remove an operator; take back their roles instead", code="role_forbids"
        )
    operator = await gw.operators.existing(operator_id)
    if operator.roles.get(ALL_APPS) == "owner":
        _keep_an_owner(gw, operator)
    await gw.operators.delete(operator_id)
    await gw.console_sessions.end_all(operator_id)
    await gw.audit.record("operator.removed", app_id=None, actor=caller.actor, target=operator_id)
    return {"operator_id": operator_id, "removed": True}


OPERATOR_HANDLERS = [list_operators, add_operator, change_operator, remove_operator]
