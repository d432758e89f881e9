"""``GET /v1/status``: liveness and readiness of every dependency.

Anyone may ask whether the service is up, so anonymous callers get only ``ok`` per component;
the details (data paths, model names, versions, error messages) are for the operator token.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.openapi import ResponseSpec

from obdal_common.contract.rpc import BoundRpc
from obdal_common.errors import ObdalError
from obdal_common.schemas import ServiceStatus, StatusQuery
from obdal_gateway.auth import bearer_matches
from obdal_gateway.state import Gateway

__all__ = ["live", "status"]

_SERVICES = ("chat", "ingest", "metering", "webhooks")
_TIMEOUT_S = 1.5  # as long as each service's status RPC may take


async def _service(status: BoundRpc[StatusQuery, ServiceStatus]) -> dict[str, Any]:
    try:
        report = await status(StatusQuery())
    except ObdalError as exc:
        return {"ok": False, "detail": exc.message}
    body: dict[str, Any] = msgspec.to_builtins(report)
    body.pop("service", None)
    return body


async def _redis(gw: Gateway) -> dict[str, Any]:
    try:
        await asyncio.wait_for(gw.redis.ping(), _TIMEOUT_S)
    except Exception as exc:
        return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    return {"ok": True}


@get(
    "/v1/status",
    summary="Readiness of the gateway, the workers and their dependencies",
    responses={503: ResponseSpec(data_container=dict[str, Any], description="Not ready (same body)")},
)
async def status(gw: Gateway, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """200 when everything can serve, 503 (same body) otherwise; details with the operator token."""
    checks = (gw.chat.status, gw.ingest.status, gw.metering.status, gw.webhooks.status)
    redis, *services = await asyncio.gather(_redis(gw), *(_service(c) for c in checks))
    by_name = dict(zip(_SERVICES, services, strict=True))
    deps: dict[str, dict[str, Any]] = {
        "nats": {"ok": gw.nc.is_connected},
        "redis": redis,
    }
    # MongoDB is reached only by metering, the index by chat and ingest: report what they see.
    metering_deps = by_name["metering"].get("dependencies", {})
    deps["mongo"] = metering_deps.get("mongo", {"ok": False, "detail": "metering is not answering"})
    chat_deps = by_name["chat"].get("dependencies", {})
    deps["index"] = chat_deps.get("index", {"ok": False, "detail": "chat is not answering"})
    ready = all(d.get("ok") for d in deps.values()) and all(s.get("ok") for s in services)
    if not bearer_matches(request, gw.admin_token):
        deps = _up_down(deps)
        by_name = _up_down(by_name)
    body = {"status": "ok" if ready else "degraded", "dependencies": deps, "services": by_name}
    return Response(body, status_code=200 if ready else 503)


def _up_down(components: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: {"ok": bool(report.get("ok"))} for name, report in components.items()}


@get("/v1/status/live", summary="Liveness: the gateway process answers")
async def live() -> dict[str, str]:
    return {"status": "ok"}
