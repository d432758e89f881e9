"""OpenTelemetry set-up and W3C trace context carried in NATS headers."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from obdal_common.settings import ObdalSettings

__all__ = ["extract_context", "inject_headers", "setup_tracing"]

_configured = False


def setup_tracing(service_name: str, settings: ObdalSettings) -> None:
    """Install a tracer provider for this process (once; later calls are no-ops).

    In the embedded stack all four services share one process and thus one
    provider, named after the first service that asks.
    """
    global _configured
    if _configured or settings.otel_exporter == "none":
        return
    exporter: SpanExporter
    if settings.otel_exporter == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otel_endpoint or "http://127.0.0.1:4318"
        exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _configured = True


def inject_headers(headers: dict[str, str] | None = None) -> dict[str, str]:
    """Add the current trace context (``traceparent``) to NATS message headers."""
    carrier = dict(headers or {})
    propagate.inject(carrier)
    return carrier


def extract_context(headers: Mapping[str, str] | None) -> context.Context:
    """The trace context a NATS message carried, to parent the handler's spans."""
    return propagate.extract(dict(headers or {}))
