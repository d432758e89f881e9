"""How an app's chat widget looks, as app settings: set by operators, read by the widget itself.

Operators set the title, greeting, colour, position and placeholder once, on the app
(``PUT /v1/admin/apps/{app_id}/widget``), rather than in every page's script tag; the widget
fetches them with its publishable key when it starts (``GET /v1/widget/config``). That read is
checked like every key request (scope ``chat``, the key's allowed origins, CORS), but counted in
a rate-limit bucket of its own: a page load must not use up the visitor's questions.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

import msgspec
from litestar import get, put

from obdal_common.errors import BadRequest
from obdal_common.schemas import HandoffConfig, WidgetConfig, WidgetPosition
from obdal_gateway.auth import Principal, principal_limited_as
from obdal_gateway.console_auth import Caller
from obdal_gateway.routes.admin_apps import app_or_404
from obdal_gateway.state import Gateway

__all__ = ["WIDGET_SETTINGS_HANDLERS", "widget_config"]

# Hex only: what the console's colour picker sends, and nothing a stylesheet could be broken with.
_HEX_COLOUR: Final = re.compile(r"^#(?:[0-9a-fA-F]{3}){1,2}$")


class WidgetSettingsBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The widget's look; a field left out or ``null`` uses the widget's default."""

    title: Annotated[str, msgspec.Meta(min_length=1, max_length=80)] | None = None
    greeting: Annotated[str, msgspec.Meta(min_length=1, max_length=500)] | None = None
    color: Annotated[str, msgspec.Meta(max_length=7)] | None = None
    position: WidgetPosition | None = None
    placeholder: Annotated[str, msgspec.Meta(min_length=1, max_length=120)] | None = None


def _view(config: WidgetConfig | None) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(config or WidgetConfig())
    return body


def _text(value: str | None) -> str | None:
    """Blank text is no text: the widget's default, rather than an empty header."""
    return (value.strip() or None) if value is not None else None


def _checked(data: WidgetSettingsBody) -> WidgetConfig:
    if data.color is not None and not _HEX_COLOUR.match(data.color):
        raise BadRequest(
            f"the colour must be a hex colour such as #1f5fbf, not {data.color!r}", code="invalid_color"
        )
    return WidgetConfig(
        title=_text(data.title),
        greeting=_text(data.greeting),
        color=data.color.lower() if data.color else None,
        position=data.position,
        placeholder=_text(data.placeholder),
    )


@get("/apps/{app_id:str}/widget", summary="How an app's chat widget looks", opt={"role": "viewer"})
async def get_widget_settings(gw: Gateway, app_id: str) -> dict[str, Any]:
    return _view((await app_or_404(gw, app_id)).widget)


@put(
    "/apps/{app_id:str}/widget",
    summary="Set an app's widget title, greeting, colour, position and placeholder",
    opt={"role": "editor"},
)
async def set_widget_settings(
    gw: Gateway, caller: Caller, app_id: str, data: WidgetSettingsBody
) -> dict[str, Any]:
    """Replaces the settings; widgets use them from their next page load. A ``data-*`` attribute
    on a page's script tag still wins over them there."""
    await app_or_404(gw, app_id)
    config = _checked(data)
    await gw.apps.set_widget(app_id, config)
    fields = sorted(k for k, v in msgspec.structs.asdict(config).items() if v is not None)
    detail = {"fields": ",".join(fields)}
    await gw.audit.record(
        "app.widget_changed", app_id=app_id, actor=caller.actor, target=app_id, detail=detail
    )
    return _view(config)


@get(
    "/v1/widget/config",
    summary="The widget's settings, for the widget (a publishable key, from an allowed origin)",
    opt={"scope": "chat"},
    dependencies={"principal": principal_limited_as("widget-config")},
)
async def widget_config(gw: Gateway, principal: Principal) -> dict[str, Any]:
    """The key's app's widget settings (``null``: the widget's default), as
    ``GET /v1/admin/apps/{app_id}/widget`` shows them, and ``handoff``: whether the widget offers
    a person and whether it asks for contact details (docs/handoff.md)."""
    app = await gw.apps.get(principal.app_id)
    handoff = app.handoff or HandoffConfig()
    # Whether to offer a person and what to ask for; never where the e-mail goes.
    return {**_view(app.widget), "handoff": {"enabled": handoff.enabled, "ask_contact": handoff.ask_contact}}


WIDGET_SETTINGS_HANDLERS = [get_widget_settings, set_widget_settings]
