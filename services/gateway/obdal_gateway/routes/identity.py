"""``/v1/admin/apps/{id}/identity-secret``: the secret an app's backend signs end users' ids with.

Shown once, when made; owners only (whoever holds it can speak as any of the app's end users).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import delete, post

from obdal_gateway.console_auth import Caller
from obdal_gateway.identity import rotated
from obdal_gateway.routes.admin_apps import app_or_404
from obdal_gateway.state import Gateway

__all__ = ["IDENTITY_HANDLERS", "IdentityRotate"]


class IdentityRotate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How long the current secret keeps verifying beside the new one (0: at once no more)."""

    overlap_s: Annotated[float, msgspec.Meta(ge=0, le=7 * 86400)] = 86400.0


@post(
    "/apps/{app_id:str}/identity-secret",
    status_code=201,
    summary="Make (or rotate) the app's identity secret; shown once",
    opt={"role": "owner"},
)
async def create_identity_secret(
    gw: Gateway, caller: Caller, app_id: str, data: IdentityRotate | None = None
) -> dict[str, Any]:
    """The app's backend signs each signed-in user's id with it: ``user_hash`` = hex
    HMAC-SHA256(secret, user id), sent with ``user`` (docs/identity.md). After a rotation the
    previous secret verifies for ``overlap_s`` (a day by default)."""
    app = await app_or_404(gw, app_id)
    overlap = (data or IdentityRotate()).overlap_s
    identity = rotated(app.identity, overlap_s=overlap, now=datetime.now(UTC))
    await gw.apps.set_identity(app_id, identity)
    await gw.audit.record(
        "app.identity_secret_created" if app.identity is None else "app.identity_secret_rotated",
        app_id=app_id,
        actor=caller.actor,
        target=app_id,
    )
    return {
        "identity_secret": identity.secret,
        "created_at": identity.created_at.isoformat(),
        "previous_valid_until": (
            None if identity.previous_valid_until is None else identity.previous_valid_until.isoformat()
        ),
    }


@delete(
    "/apps/{app_id:str}/identity-secret",
    status_code=200,
    summary="Stop verifying end users (every user_hash is refused after this)",
    opt={"role": "owner"},
)
async def delete_identity_secret(gw: Gateway, caller: Caller, app_id: str) -> dict[str, Any]:
    await app_or_404(gw, app_id)
    await gw.apps.set_identity(app_id, None)
    await gw.audit.record("app.identity_secret_deleted", app_id=app_id, actor=caller.actor, target=app_id)
    return {"app_id": app_id, "identity_verification": {"enabled": False}}


IDENTITY_HANDLERS = [create_identity_secret, delete_identity_secret]
