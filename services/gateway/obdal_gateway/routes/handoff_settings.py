"""``/v1/admin/apps/{app_id}/handoff``: whether an app's customers may ask for a person, what the
widget asks them for, and where the e-mail of a new handoff goes (docs/handoff.md)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

import msgspec
from litestar import get, put
from litestar.openapi import ResponseSpec

from obdal_common.errors import UnprocessableContent
from obdal_common.schemas import ContactPolicy, HandoffConfig
from obdal_gateway.console_auth import Caller
from obdal_gateway.routes.admin_apps import app_or_404
from obdal_gateway.state import Gateway

__all__ = ["HANDOFF_SETTINGS_HANDLERS", "checked_email"]

# Shaped like an address (one @, a dot in the domain, no spaces): what a person can write to.
# Whether it exists is the mail server's to say.
_EMAIL: Final = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\".]+$")
_MAX_EMAIL_CHARS: Final = 254


def checked_email(value: str, *, code: str) -> str:
    """``value`` trimmed, if it is shaped like an e-mail address; else 422 ``code``."""
    email = value.strip()
    if len(email) > _MAX_EMAIL_CHARS or not _EMAIL.match(email):
        raise UnprocessableContent(f"{value!r} is not an e-mail address", code=code)
    return email


class HandoffSettingsBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = False
    ask_contact: ContactPolicy = "optional"
    notify_email: Annotated[str, msgspec.Meta(max_length=_MAX_EMAIL_CHARS)] | None = None


def _view(config: HandoffConfig | None) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(config or HandoffConfig())
    return body


@get(
    "/apps/{app_id:str}/handoff",
    summary="Whether an app's customers may ask for a person",
    opt={"role": "viewer"},
)
async def get_handoff_settings(gw: Gateway, app_id: str) -> dict[str, Any]:
    return _view((await app_or_404(gw, app_id)).handoff)


@put(
    "/apps/{app_id:str}/handoff",
    summary="Turn handoff to a person on or off, what to ask the customer, where to send the e-mail",
    opt={"role": "editor"},
    responses={
        422: ResponseSpec(
            data_container=dict[str, Any], description="`invalid_notify_email`: not an e-mail address"
        )
    },
)
async def set_handoff_settings(
    gw: Gateway, caller: Caller, app_id: str, data: HandoffSettingsBody
) -> dict[str, Any]:
    """Replaces the settings; 422 ``invalid_notify_email`` for an address that is not one."""
    await app_or_404(gw, app_id)
    notify = data.notify_email.strip() if data.notify_email else ""
    config = HandoffConfig(
        enabled=data.enabled,
        ask_contact=data.ask_contact,
        notify_email=checked_email(notify, code="invalid_notify_email") if notify else None,
    )
    await gw.apps.set_handoff(app_id, config)
    await gw.audit.record(
        "app.handoff_changed",
        app_id=app_id,
        actor=caller.actor,
        target=app_id,
        detail={
            "enabled": str(config.enabled),
            "ask_contact": config.ask_contact,
            "notify": str(bool(notify)),
        },
    )
    return _view(config)


HANDOFF_SETTINGS_HANDLERS = [get_handoff_settings, set_handoff_settings]
