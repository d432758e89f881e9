"""Server spans, request metrics by route, and the ``GET /metrics`` scrape endpoint."""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, Response, get
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from opentelemetry import metrics, trace

from obdal_common.metrics import prometheus_text
from obdal_gateway.auth import metrics_guard

__all__ = ["RequestMetrics", "name_span", "prometheus_metrics", "tracing_plugin"]

# Probes and scrapes would be most of the spans and say nothing.
_UNTRACED = ["^/metrics$", "^/v1/status/live$"]
# Unmatched paths share one label so scanners cannot blow up the metric's cardinality.
_UNMATCHED = "unmatched"

_meter = metrics.get_meter(__name__)
_requests = _meter.create_counter(
    "obdal.http.requests", unit="{request}", description="HTTP requests answered, by route and status"
)
_errors = _meter.create_counter(
    "obdal.http.errors", unit="{request}", description="HTTP requests answered with status >= 400"
)
_duration = _meter.create_histogram(
    "obdal.http.duration",
    unit="s",
    description="Time from request to the end of the response (whole stream for SSE)",
)


def _route(scope: Scope) -> str:
    # Litestar's router stores the matched template ("/v1/files/{file_id:str}") in the scope.
    template = scope.get("path_template")
    return str(template) if template else _UNMATCHED


def _span_details(scope: Scope) -> tuple[str, dict[str, Any]]:
    # The span starts before routing: named by method now, by route once routed (name_span).
    return str(scope.get("method", "HTTP")), {}


def name_span(request: Request[Any, Any, Any]) -> None:
    """``before_request`` hook: name the server span after the matched route, as OpenTelemetry advises."""
    route = _route(request.scope)
    span = trace.get_current_span()
    span.update_name(f"{request.method} {route}")
    span.set_attribute("http.route", route)


def tracing_plugin() -> OpenTelemetryPlugin:
    """One server span per request; SSE chunks are not spans."""
    return OpenTelemetryPlugin(
        OpenTelemetryConfig(
            exclude=_UNTRACED,
            exclude_spans=["send", "receive"],
            scope_span_details_extractor=_span_details,
        )
    )


class RequestMetrics(ASGIMiddleware):
    """Middleware counting requests and errors by route, status and method, and timing them.

    The gateway runs it around routing (obdal_gateway.app), not per route, so it also sees
    what the router refused (404/405) and every response the exception handlers produced.
    """

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if scope["path"] == "/metrics":
            await next_app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await next_app(scope, receive, observe)
        finally:
            attrs: dict[str, str | int] = {
                "http.route": _route(scope),
                "http.request.method": str(scope.get("method", "")),
                "http.response.status_code": status,
            }
            _requests.add(1, attrs)
            if status >= 400:
                _errors.add(1, attrs)
            _duration.record(time.perf_counter() - started, attrs)


@get("/metrics", include_in_schema=False, sync_to_thread=False, guards=[metrics_guard])
def prometheus_metrics() -> Response[bytes]:
    """This process's metrics in the Prometheus text format (all services, in the embedded stack).

    Scrapers send ``OBDAL_METRICS_TOKEN`` (or, unset, the operator token) as a bearer token; open
    only with ``OBDAL_METRICS_OPEN`` (``metrics_guard``).
    """
    body, content_type = prometheus_text()
    return Response(body, media_type=content_type)
