"""``GET /v1/export`` and ``GET /v1/admin/apps/{app_id}/export`` (on the admin router): the
whole app as one archive (obdal_gateway.app_export, docs/export.md)."""

from __future__ import annotations

from typing import Any

from litestar import get, post
from litestar.response import Stream

from obdal_common.errors import UnprocessableContent
from obdal_gateway.app_export import gather
from obdal_gateway.auth import Principal
from obdal_gateway.history_import import HistoryImport, publish
from obdal_gateway.routes.admin_apps import app_or_404
from obdal_gateway.state import Gateway

__all__ = ["admin_export_app", "export_app", "import_history"]

_MEDIA_TYPE = "application/gzip"
# One archive member (a page of sessions or 1,000 usage records) per request, with room.
_IMPORT_MAX_BYTES = 32 * 1024 * 1024


async def _archive(gw: Gateway, app_id: str) -> Stream:
    # What the archive starts with is read first: a service that does not answer is a 503 here.
    export = await gather(gw, app_id)
    disposition = f'attachment; filename="{export.filename()}"'
    return Stream(export.stream(gw), media_type=_MEDIA_TYPE, headers={"Content-Disposition": disposition})


@get(
    "/v1/export",
    summary="The key's app as one archive: documents, settings, keys, answers, sessions, usage",
    media_type=_MEDIA_TYPE,
    opt={"scope": "export"},
)
async def export_app(principal: Principal, gw: Gateway) -> Stream:
    """A ``.tar.gz`` of open formats (files, NDJSON and ``manifest.json`` last, with a schema
    version and a SHA-256 per member); secrets are never in it."""
    return await _archive(gw, principal.app_id)


@get(
    "/apps/{app_id:str}/export",
    summary="An app as one archive (`obdal apps export APP`), the same as `GET /v1/export`",
    media_type=_MEDIA_TYPE,
    opt={"role": "owner"},
)
async def admin_export_app(gw: Gateway, app_id: str) -> Stream:
    return await _archive(gw, (await app_or_404(gw, app_id)).app_id)


@post(
    "/apps/{app_id:str}/import/history",
    status_code=202,
    summary="Bring an exported app's sessions and usage records into this app (`obdal apps import`)",
    opt={"role": "owner"},
    request_max_body_size=_IMPORT_MAX_BYTES,
)
async def import_history(gw: Gateway, app_id: str, data: HistoryImport) -> dict[str, Any]:
    """Published for metering, which stores each once (sessions and usage read them a moment
    later); ``key_id`` and the values of ``keys`` must be keys of this app."""
    app = await app_or_404(gw, app_id)
    for key_id in {data.key_id, *data.keys.values()}:
        record = gw.keys.cached(key_id)
        if record is None or record.app_id != app.app_id:
            raise UnprocessableContent(f"{key_id} is not a key of {app.app_id}", code="invalid_key_id")
    counts = await publish(gw.js, app.app_id, data, give_up_after=gw.settings.event_publish_retry_s)
    return {"app_id": app.app_id, **counts}
