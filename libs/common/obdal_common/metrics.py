"""OpenTelemetry metrics, exposed in the Prometheus text format.

Every process installs one :class:`MeterProvider` whose reader is the Prometheus
exporter: the gateway serves it at ``GET /metrics`` on its HTTP port, a worker
process on ``OBDAL_METRICS_PORT`` (see :func:`serve_metrics`). Instruments are
created at import time through the OpenTelemetry API, which binds them to the
provider once it is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.js import JetStreamContext
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.resources import Resource

from obdal_common.redaction import METRIC_ATTRIBUTE_ALLOWLIST
from obdal_common.settings import ObdalSettings

__all__ = ["consumer_gauges", "prometheus_text", "serve_metrics", "setup_metrics"]

log = logging.getLogger(__name__)

_configured = False


def setup_metrics(service_name: str) -> None:
    """Install the Prometheus-backed meter provider for this process (once)."""
    global _configured
    if _configured:
        return
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    provider = MeterProvider(
        resource=Resource.create({"service.name": service_name}),
        metric_readers=[PrometheusMetricReader()],
        # The ASGI middleware's own ``http.server.*`` metrics keep only allow-listed labels: never
        # a URL, target or query string (a key or a user name in a label; unbounded cardinality).
        views=[View(instrument_name="http.server.*", attribute_keys=set(METRIC_ATTRIBUTE_ALLOWLIST))],
    )
    metrics.set_meter_provider(provider)
    _configured = True


def prometheus_text() -> tuple[bytes, str]:
    """The current metrics of this process in the Prometheus exposition format, and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def serve_metrics(settings: ObdalSettings) -> None:
    """Serve ``/metrics`` on ``OBDAL_METRICS_PORT`` in a background thread (workers; off when unset)."""
    if settings.metrics_port is None:
        return
    from prometheus_client import start_http_server

    start_http_server(settings.metrics_port, addr=settings.metrics_host)
    log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)


@dataclass
class _Backlog:
    pending: int = 0
    ack_pending: int = 0
    oldest_age_s: float = 0.0


# Sampled by an asyncio task and read by the exporter's (synchronous) scrape callbacks.
_backlogs: dict[str, _Backlog] = {}


def _observe(field: str) -> metrics.CallbackT:
    def callback(_: CallbackOptions) -> Iterable[Observation]:
        for consumer, backlog in list(_backlogs.items()):
            yield Observation(getattr(backlog, field), {"consumer": consumer})

    return callback


_meter = metrics.get_meter(__name__)
_meter.create_observable_gauge(
    "obdal.consumer.pending",
    callbacks=[_observe("pending")],
    unit="{message}",
    description="Messages of a JetStream consumer's stream not yet delivered (the consumer's lag)",
)
_meter.create_observable_gauge(
    "obdal.consumer.ack_pending",
    callbacks=[_observe("ack_pending")],
    unit="{message}",
    description="Messages delivered to a consumer and not yet acknowledged (in progress)",
)
_meter.create_observable_gauge(
    "obdal.consumer.oldest_age",
    callbacks=[_observe("oldest_age_s")],
    unit="s",
    description="Age of the oldest message a consumer has not acknowledged yet (0 when caught up)",
)


async def _sample(js: JetStreamContext, stream: str, consumer: str, subject: str) -> _Backlog:
    info = await js.consumer_info(stream, consumer)
    backlog = _Backlog(pending=info.num_pending or 0, ack_pending=info.num_ack_pending or 0)
    if backlog.pending or backlog.ack_pending:
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        oldest = await js.get_msg(stream, seq=floor + 1, subject=subject, next=True)
        if oldest.time is not None:
            backlog.oldest_age_s = max(0.0, (datetime.now(UTC) - oldest.time).total_seconds())
    return backlog


@contextlib.asynccontextmanager
async def consumer_gauges(
    js: JetStreamContext, *, stream: str, consumer: str, subject: str, every_s: float
) -> AsyncIterator[None]:
    """Within the block, refresh the backlog gauges of ``consumer`` every ``every_s`` seconds."""

    async def sample() -> None:
        while True:
            try:
                _backlogs[consumer] = await _sample(js, stream, consumer, subject)
            except Exception as exc:  # the consumer is not created yet, or NATS is reconnecting
                log.debug("cannot sample consumer %s: %s", consumer, exc)
            await asyncio.sleep(every_s)

    task = asyncio.create_task(sample())
    try:
        yield
    finally:
        task.cancel()
