"""OpenTelemetry set-up and W3C trace context carried in NATS headers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Link

from obdal_common.redaction import redact_attributes
from obdal_common.settings import ObdalSettings

__all__ = ["RedactingSpanExporter", "extract_context", "inject_headers", "redact_span", "setup_tracing"]

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
    # Every exported span passes through redaction: no URL query, key or personal parameter leaves.
    provider.add_span_processor(BatchSpanProcessor(RedactingSpanExporter(exporter)))
    trace.set_tracer_provider(provider)
    _configured = True


def redact_span(span: ReadableSpan) -> ReadableSpan:
    """A copy of ``span`` whose attributes, events, links and resource hold no query string or secret
    (obdal_common.redaction)."""
    resource = span.resource
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=Resource(redact_attributes(resource.attributes), resource.schema_url) if resource else None,
        attributes=redact_attributes(span.attributes),
        events=[Event(e.name, redact_attributes(e.attributes), e.timestamp) for e in span.events],
        links=[Link(link.context, redact_attributes(link.attributes)) for link in span.links],
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingSpanExporter(SpanExporter):
    """Wraps the real exporter: each span is redacted (:func:`redact_span`) on its way out.

    Redacting at export, not when attributes are set, covers every instrumentation (ours and
    the libraries'), every attribute set at any time, and every service of the process.
    """

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._exporter.export([redact_span(span) for span in spans])

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)


def inject_headers(headers: dict[str, str] | None = None) -> dict[str, str]:
    """Add the current trace context (``traceparent``) to NATS message headers."""
    carrier = dict(headers or {})
    propagate.inject(carrier)
    return carrier


def extract_context(headers: Mapping[str, str] | None) -> context.Context:
    """The trace context a NATS message carried, to parent the handler's spans."""
    return propagate.extract(dict(headers or {}))
