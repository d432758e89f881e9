"""``/v1/admin`` key endpoints: create (secret shown once), list, read, patch, rotate, revoke."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Response, delete, get, patch, post

from obdal_common.errors import BadRequest, NotFound
from obdal_common.ids import is_id
from obdal_common.schemas import KeyKind, KeyRecord
from obdal_gateway.console_auth import Caller
from obdal_gateway.keys import ALL_SCOPES, DEFAULT_SCOPES, PUBLISHABLE_SCOPES, hash_key, new_key
from obdal_gateway.origins import validate_allowed_origin
from obdal_gateway.routes.admin_apps import app_or_404
from obdal_gateway.state import Gateway

__all__ = ["KEY_HANDLERS", "key_view"]

_NAME = msgspec.Meta(min_length=1, max_length=200)
_POSITIVE = msgspec.Meta(ge=1, le=10_000_000_000)
_MAX_GRACE_S = 30 * 86400


class NewKey(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, _NAME]
    kind: KeyKind = "secret"
    scopes: list[str] | None = None
    allowed_origins: list[str] = msgspec.field(default_factory=list)
    expires_at: datetime | None = None
    rate_limit_rpm: Annotated[int, _POSITIVE] | None = None
    token_budget: Annotated[int, _POSITIVE] | None = None
    proof_of_work: bool = False


class KeyChanges(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Only the fields sent change; ``null`` clears an expiry, limit or budget."""

    name: Annotated[str, _NAME] | msgspec.UnsetType = msgspec.UNSET
    scopes: list[str] | msgspec.UnsetType = msgspec.UNSET
    allowed_origins: list[str] | msgspec.UnsetType = msgspec.UNSET
    expires_at: datetime | msgspec.UnsetType | None = msgspec.UNSET
    rate_limit_rpm: Annotated[int, _POSITIVE] | msgspec.UnsetType | None = msgspec.UNSET
    token_budget: Annotated[int, _POSITIVE] | msgspec.UnsetType | None = msgspec.UNSET
    proof_of_work: bool | msgspec.UnsetType = msgspec.UNSET


class Rotation(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    grace_period_s: Annotated[int, msgspec.Meta(ge=0, le=_MAX_GRACE_S)] = 3600


def _scopes(scopes: list[str], *, kind: KeyKind) -> tuple[str, ...]:
    unknown = set(scopes) - ALL_SCOPES
    if unknown:
        raise BadRequest(
            f"unknown scopes {sorted(unknown)}; known: {sorted(ALL_SCOPES)}", code="invalid_scope"
        )
    readable = set(scopes) - PUBLISHABLE_SCOPES
    if kind == "publishable" and readable:
        raise BadRequest(
            f"publishable keys are public (in web pages) and may only have {sorted(PUBLISHABLE_SCOPES)},"
            f" not {sorted(readable)}: use a secret key on a server for those",
            code="scope_not_allowed_for_publishable",
        )
    return tuple(sorted(set(scopes)))


def _origins(origins: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(validate_allowed_origin(o) for o in origins))


def _proof_of_work(wanted: bool, *, kind: KeyKind) -> bool:
    if wanted and kind != "publishable":
        raise BadRequest(
            "proof of work is for publishable keys (a flood from a web page); "
            "a secret key is the app's own server",
            code="proof_of_work_for_publishable_only",
        )
    return wanted


def _expiry(expires_at: datetime | None) -> datetime | None:
    if expires_at is not None and (expires_at.tzinfo is None or expires_at <= datetime.now(UTC)):
        raise BadRequest("expires_at must be a future time with a timezone", code="invalid_expiry")
    return expires_at


def key_view(record: KeyRecord, last_used_at: str | None) -> dict[str, Any]:
    """A key as operators see it: never its secret or hashes."""
    body: dict[str, Any] = msgspec.to_builtins(record)
    for private in ("secret_hash", "previous_secret_hash"):
        body.pop(private, None)
    body["rotation_grace_until"] = body.pop("previous_valid_until", None)
    body["last_used_at"] = last_used_at
    return body


async def _key_or_404(gw: Gateway, key_id: str) -> KeyRecord:
    if not is_id("key", key_id):
        raise NotFound(f"no key {key_id}", code="key_not_found")
    return await gw.keys.existing(key_id)


async def _one_view(gw: Gateway, record: KeyRecord) -> dict[str, Any]:
    return key_view(record, (await gw.keys.last_used([record.key_id]))[record.key_id])


@post(
    "/apps/{app_id:str}/keys",
    status_code=201,
    summary="Create a key (its secret is shown once)",
    opt={"role": "editor"},
)
async def create_key(gw: Gateway, caller: Caller, app_id: str, data: NewKey) -> Response[dict[str, Any]]:
    await app_or_404(gw, app_id)
    key_id, secret = new_key(data.kind)
    record = KeyRecord(
        key_id=key_id,
        app_id=app_id,
        name=data.name.strip(),
        kind=data.kind,
        scopes=_scopes(data.scopes, kind=data.kind) if data.scopes is not None else DEFAULT_SCOPES[data.kind],
        allowed_origins=_origins(data.allowed_origins),
        secret_hash=hash_key(secret),
        created_at=datetime.now(UTC),
        expires_at=_expiry(data.expires_at),
        rate_limit_rpm=data.rate_limit_rpm,
        token_budget=data.token_budget,
        proof_of_work=_proof_of_work(data.proof_of_work, kind=data.kind),
    )
    await gw.keys.put(record)
    await gw.audit.record(
        "key.created", app_id=app_id, actor=caller.actor, target=key_id, detail={"kind": data.kind}
    )
    return Response({**key_view(record, None), "key": secret}, status_code=201)


@get("/apps/{app_id:str}/keys", summary="List an app's keys", opt={"role": "editor"})
async def list_keys(gw: Gateway, app_id: str) -> dict[str, Any]:
    await app_or_404(gw, app_id)
    records = gw.keys.for_app(app_id)
    last_used = await gw.keys.last_used([k.key_id for k in records])
    return {"keys": [key_view(k, last_used[k.key_id]) for k in records]}


@get("/keys/{key_id:str}", summary="One key", opt={"role": "editor", "app_from": "key"})
async def get_key(gw: Gateway, key_id: str) -> dict[str, Any]:
    return await _one_view(gw, await _key_or_404(gw, key_id))


@patch(
    "/keys/{key_id:str}",
    summary="Change a key's name, scopes, origins, expiry, rate limit, budget or proof of work",
    opt={"role": "editor", "app_from": "key"},
)
async def update_key(gw: Gateway, caller: Caller, key_id: str, data: KeyChanges) -> dict[str, Any]:
    record = await _key_or_404(gw, key_id)
    changes: dict[str, Any] = {}
    if data.name is not msgspec.UNSET:
        changes["name"] = data.name.strip()
    if data.scopes is not msgspec.UNSET:
        changes["scopes"] = _scopes(data.scopes, kind=record.kind)
    if data.allowed_origins is not msgspec.UNSET:
        changes["allowed_origins"] = _origins(data.allowed_origins)
    if data.expires_at is not msgspec.UNSET:
        changes["expires_at"] = _expiry(data.expires_at)
    if data.rate_limit_rpm is not msgspec.UNSET:
        changes["rate_limit_rpm"] = data.rate_limit_rpm
    if data.token_budget is not msgspec.UNSET:
        changes["token_budget"] = data.token_budget
    if data.proof_of_work is not msgspec.UNSET:
        changes["proof_of_work"] = _proof_of_work(data.proof_of_work, kind=record.kind)
    if not changes:
        raise BadRequest("nothing to change", code="empty_patch")
    record = msgspec.structs.replace(record, **changes)
    await gw.keys.put(record)
    detail = {"fields": ",".join(sorted(changes))}
    for field in ("scopes", "allowed_origins"):
        if field in changes:
            detail[field] = " ".join(changes[field])
    await gw.audit.record(
        "key.updated", app_id=record.app_id, actor=caller.actor, target=key_id, detail=detail
    )
    return await _one_view(gw, record)


@post(
    "/keys/{key_id:str}/rotate",
    status_code=200,
    summary="New secret; the old one works for a grace period",
    opt={"role": "editor", "app_from": "key"},
)
async def rotate_key(
    gw: Gateway, caller: Caller, key_id: str, data: Rotation | None = None
) -> dict[str, Any]:
    await _key_or_404(gw, key_id)
    grace = timedelta(seconds=(data or Rotation()).grace_period_s)
    record, secret = await gw.keys.rotate(key_id, grace=grace)
    await gw.audit.record(
        "key.rotated",
        app_id=record.app_id,
        actor=caller.actor,
        target=key_id,
        detail={"grace_period_s": str(int(grace.total_seconds()))},
    )
    return {**await _one_view(gw, record), "key": secret}


@delete(
    "/keys/{key_id:str}",
    status_code=200,
    summary="Revoke a key, at once, in every gateway",
    opt={"role": "editor", "app_from": "key"},
)
async def revoke_key(gw: Gateway, caller: Caller, key_id: str) -> dict[str, Any]:
    await _key_or_404(gw, key_id)
    record = await gw.keys.revoke(key_id)
    await gw.audit.record("key.revoked", app_id=record.app_id, actor=caller.actor, target=key_id)
    await gw.audit.hook(
        "key.revoked",
        app_id=record.app_id,
        data={"key_id": key_id, "name": record.name, "kind": record.kind},
        event_id=f"revoked.{key_id}",
    )
    return await _one_view(gw, record)


KEY_HANDLERS = [create_key, list_keys, get_key, update_key, rotate_key, revoke_key]
