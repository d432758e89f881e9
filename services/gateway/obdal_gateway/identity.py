"""Verified end users: the app's backend signs each user id, the gateway checks the signature.

A publishable key is public, so anything a page sends with it can be forged, the end user's id
included. The site's backend, which knows who is signed in, computes
``HMAC-SHA256(identity secret, user id)`` (hex) and puts it in the page beside the id
(``data-user-id``, ``data-user-hash``); the gateway recomputes it and compares in constant time.
A ``user`` sent with a publishable key and no valid hash is ignored (the turn is anonymous), so
only a verified user's sessions are tied to that user: listed by user, erased with them, and
resumed on another device (``POST /v1/widget/conversation``). A secret key's ``user`` is trusted
as it always was (the caller is the app's own server). Intercom and Chatbase do the same;
docs/identity.md has the server side in Python and Node.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from obdal_common.errors import BadRequest, Unauthorized
from obdal_common.schemas import AppRecord, IdentitySecret
from obdal_gateway.auth import Principal
from obdal_gateway.state import Gateway

__all__ = ["end_user", "new_identity_secret", "public_app", "rotated", "sign_user", "verified"]

_SECRET_BYTES = 32


def sign_user(secret: str, user: str) -> str:
    """What the app's backend computes: the hex HMAC-SHA256 of the user id under the secret."""
    return hmac.new(secret.encode(), user.encode(), hashlib.sha256).hexdigest()


def new_identity_secret() -> str:
    return "ids_" + secrets.token_hex(_SECRET_BYTES)


def rotated(current: IdentitySecret | None, *, overlap_s: float, now: datetime) -> IdentitySecret:
    """A new secret; the current one (if any) keeps verifying for ``overlap_s``, so pages rendered
    with its hashes keep working while the backend switches."""
    keep = current is not None and overlap_s > 0
    return IdentitySecret(
        secret=new_identity_secret(),
        created_at=now,
        previous_secret=current.secret if keep and current is not None else None,
        previous_valid_until=now + timedelta(seconds=overlap_s) if keep else None,
    )


def verified(identity: IdentitySecret, user: str, user_hash: str, *, now: datetime) -> bool:
    """Whether ``user_hash`` signs ``user`` under the current (or the still valid previous) secret."""
    valid = [identity.secret]
    if identity.previous_secret and identity.previous_valid_until and now < identity.previous_valid_until:
        valid.append(identity.previous_secret)
    # Every candidate compared, in constant time: the time taken says nothing of which matched.
    matches = [hmac.compare_digest(sign_user(secret, user), user_hash.lower()) for secret in valid]
    return any(matches)


async def end_user(gw: Gateway, principal: Principal, user: str | None, user_hash: str | None) -> str | None:
    """The end user a turn is recorded for: verified, trusted (a secret key's) or none.

    400 ``user_hash_without_user`` or ``identity_verification_off`` (no secret to check with);
    401 ``invalid_user_hash`` when the hash does not sign ``user``."""
    if user_hash is None:
        return user if principal.key.kind == "secret" else None
    if user is None:
        raise BadRequest("user_hash signs a user: send the user too", code="user_hash_without_user")
    app = await gw.apps.get(principal.app_id)
    if app.identity is None:
        raise BadRequest(
            "this app verifies no end users: create its identity secret first (docs/identity.md)",
            code="identity_verification_off",
        )
    if not verified(app.identity, user, user_hash, now=datetime.now(UTC)):
        raise Unauthorized("user_hash does not sign this user", code="invalid_user_hash")
    return user


def public_app(app: AppRecord) -> dict[str, Any]:
    """An app as the API shows it: whether it verifies end users, never its secret."""
    body: dict[str, Any] = msgspec.to_builtins(app)
    identity = body.pop("identity")
    body["identity_verification"] = (
        {"enabled": False}
        if identity is None
        else {
            "enabled": True,
            "created_at": identity["created_at"],
            "previous_valid_until": identity["previous_valid_until"],
        }
    )
    return body
