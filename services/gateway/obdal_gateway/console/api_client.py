"""The console's reads of our own HTTP API, made in-process over ASGI.

A page asks ``/v1/...`` exactly as a browser or a script would: the same routes, the same
authentication (the operator's own cookie, passed along), the same role checks and the same
errors, so the console can show nothing the API would not. In-process (``httpx.ASGITransport``)
rather than over loopback TCP, because it cannot be pointed at another server by a header and
costs no socket; the browser's own changes go to the API directly (``static/console.js``).
"""

from __future__ import annotations

from typing import Any

import httpx
from litestar import Litestar, Request

from obdal_common.errors import error_for_code
from obdal_gateway.console_auth import APP_HEADER

__all__ = ["ConsoleApi", "console_api"]

_INTERNAL = "http://console.internal"


class ConsoleApi:
    def __init__(self, app: Litestar) -> None:
        # httpx types an ASGI app's messages as plain mappings, Litestar as TypedDicts.
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        self._client = httpx.AsyncClient(transport=transport, base_url=_INTERNAL, timeout=30)

    async def get(
        self,
        request: Request[Any, Any, Any],
        path: str,
        *,
        app_id: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """The JSON the API answers ``GET path`` for this request's operator; its error, raised."""
        headers = {"cookie": request.headers.get("cookie", "")}
        if app_id is not None:
            headers[APP_HEADER] = app_id
        query = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        response = await self._client.get(path, params=query, headers=headers)
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                code, message = str(error["code"]), str(error["message"])
            except (ValueError, KeyError, TypeError):
                code, message = "console_api_error", response.text[:200]
            retry = int(response.headers.get("retry-after", "1") or 1)
            raise error_for_code(response.status_code, code, message, retry_after=retry)
        return response.json()

    async def aclose(self) -> None:
        await self._client.aclose()


def console_api(request: Request[Any, Any, Any]) -> ConsoleApi:
    """The app's one client (made on first use: it needs the finished app)."""
    state = request.app.state
    client: ConsoleApi | None = state.get("console_api")
    if client is None:
        client = ConsoleApi(request.app)
        state["console_api"] = client
    return client
