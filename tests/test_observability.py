"""Traces, metrics and JSON logs of a running stack, read the way an operator's tools read them.

The stack exports OTLP/HTTP to a loopback receiver this module runs (the protobuf
a collector or Jaeger would get), serves Prometheus text at /metrics, and logs JSON.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from obdal.servers import free_port, nats_server
from tests.api import Api
from tests.conftest import BIN, Process, Servers, clean_env, start_process, wait_http

ADMIN = "traced-admin-token-0123456789"
METRICS_TOKEN = "traced-metrics-token-0123456789"
QUESTION = "How many days is the refund window?"
DOCUMENT = "# Returns\n\nThe refund window is 45 days from delivery. Refunds go to the original card.\n"


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    scope: str
    service: str
    attributes: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    resource: dict[str, Any] = field(default_factory=dict)

    @property
    def obdal_service(self) -> str:
        """Which Obdal service made the span, from its instrumentation scope (one process here)."""
        if self.scope.startswith("opentelemetry.instrumentation.asgi"):
            return "gateway"  # the Litestar plugin's server spans: only the gateway serves HTTP
        return self.scope.split(".")[0].removeprefix("obdal_")


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class _Receiver(BaseHTTPRequestHandler):
    spans: list[Span]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        Span(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            name=span.name,
                            scope=scope_spans.scope.name,
                            service=str(resource.get("service.name")),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            events=[
                                {"name": e.name, **{a.key: _value(a.value) for a in e.attributes}}
                                for e in span.events
                            ],
                            resource=resource,
                        )
                    )
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


def start_receiver() -> tuple[ThreadingHTTPServer, list[Span]]:
    """A loopback OTLP/HTTP trace receiver (in a thread) and the list its spans land in."""
    spans: list[Span] = []
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), type("Receiver", (_Receiver,), {"spans": spans}))
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    return receiver, spans


@dataclass(frozen=True)
class Traced:
    url: str
    spans: list[Span]
    process: Process

    def trace_of(self, name: str, timeout: float = 20, **attributes: Any) -> list[Span]:
        """Every span of the trace whose root is ``name`` with ``attributes``, once complete."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            roots = [
                s
                for s in list(self.spans)
                if s.name == name and all(s.attributes.get(k) == v for k, v in attributes.items())
            ]
            if roots:
                spans = [s for s in list(self.spans) if s.trace_id == roots[0].trace_id]
                if "metering" in {s.obdal_service for s in spans}:  # the last hop has arrived
                    return spans
            time.sleep(0.2)
        pytest.fail(f"no complete trace for {name} {attributes}; got {[s.name for s in self.spans]}")


@pytest.fixture(scope="module")
def traced(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    """``obdal up`` exporting OTLP to a loopback receiver, with its own NATS and Redis (no other
    stack's workers can take its requests) and JSON logs."""
    receiver, spans = start_receiver()
    base = tmp_path_factory.mktemp("traced")
    port = free_port()
    env = clean_env(
        OBDAL_MONGO_URL=servers.mongo.url,
        OBDAL_MONGO_DB="traced",
        OBDAL_DATA_DIR=str(base / "data"),
        OBDAL_GATEWAY_PORT=str(port),
        OBDAL_ADMIN_TOKEN=ADMIN,
        OBDAL_OTEL_EXPORTER="otlp",
        OBDAL_OTEL_ENDPOINT=f"http://127.0.0.1:{receiver.server_address[1]}",
        OBDAL_LOG_FORMAT="json",
        OBDAL_METRICS_SAMPLE_S="0.2",
        OBDAL_METRICS_TOKEN=METRICS_TOKEN,
        OTEL_BSP_SCHEDULE_DELAY="100",  # export within 0.1 s instead of 5 s
    )
    process = start_process([str(BIN / "obdal"), "up"], env, base / "obdal.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/v1/status", process)
        yield Traced(url=url, spans=spans, process=process)
    finally:
        code = process.stop()
        receiver.shutdown()
        assert code == 0, f"obdal up exited with {code}:\n{process.log()[-4000:]}"


@pytest.fixture(scope="module")
def exercised(traced: Traced) -> dict[str, str]:
    """One upload (indexed) and one streamed chat through the traced stack."""
    api = Api(traced.url, ADMIN)
    app_id, key = api.new_tenant("traced")
    file_id = api.index(key, "returns.md", DOCUMENT)
    answer = api.chat_stream(key, QUESTION)
    assert answer.names()[-1] == "end", answer.events
    return {"app_id": app_id, "key": key, "file_id": file_id, "session_id": answer.one("end")["session_id"]}


def connected(spans: list[Span], root: str, *, services: set[str]) -> dict[str, Span]:
    """Check that ``spans`` form one tree under ``root`` spanning ``services``; the spans by name."""
    assert services <= {s.obdal_service for s in spans}
    # Parent links, not only a shared trace id: each worker's span hangs under the gateway's.
    ids = {s.span_id for s in spans}
    assert [s.name for s in spans if s.parent_id not in ids] == [root]
    return {s.name: s for s in spans}


def test_chat_is_one_trace_across_gateway_chat_and_metering(
    traced: Traced, exercised: dict[str, str]
) -> None:
    spans = traced.trace_of("POST /v1/chat", **{"obdal.app_id": exercised["app_id"]})
    by_name = connected(spans, "POST /v1/chat", services={"gateway", "chat", "metering"})
    assert {"chat.answer", "chat.retrieve", "chat.generate", "metering.store"} <= by_name.keys()
    answer = by_name["chat.answer"].attributes
    assert answer["obdal.session_id"] == exercised["session_id"]
    generate = by_name["chat.generate"].attributes
    assert generate["gen_ai.request.model"] == "obdal/extractive"
    assert generate["gen_ai.usage.output_tokens"] > 0
    assert by_name["chat.retrieve"].attributes["obdal.hits"] >= 1
    assert {s.attributes.get("obdal.event") for s in spans if s.name == "metering.store"} == {"usage", "turn"}


def test_upload_is_one_trace_across_gateway_ingest_and_metering(
    traced: Traced, exercised: dict[str, str]
) -> None:
    spans = traced.trace_of("POST /v1/files", **{"obdal.app_id": exercised["app_id"]})
    by_name = connected(spans, "POST /v1/files", services={"gateway", "ingest", "metering"})
    assert {"ingest.job", "ingest.parse", "ingest.index", "metering.store"} <= by_name.keys()
    assert by_name["ingest.job"].attributes["obdal.file_id"] == exercised["file_id"]
    assert by_name["ingest.index"].attributes["obdal.chunks"] >= 1
    assert by_name["metering.store"].attributes["obdal.event"] == "audit"


def test_spans_carry_no_keys_and_no_message_content(traced: Traced, exercised: dict[str, str]) -> None:
    traced.trace_of("POST /v1/chat", **{"obdal.app_id": exercised["app_id"]})
    values = json.dumps([s.attributes for s in traced.spans])
    assert exercised["key"] not in values
    assert QUESTION not in values
    assert "45 days" not in values
    # The embedded stack is one process: one resource, services told apart by scope.
    assert {s.service for s in traced.spans} == {"obdal"}


def test_keys_and_personal_data_in_query_strings_reach_no_span_log_or_metric(
    traced: Traced, exercised: dict[str, str]
) -> None:
    """``?api_key=`` (GET routes take it, for browsers) and ``?user=`` are stripped from every
    exported span (``http.url``, ``url.query``...), from the logs and from the metric labels."""
    key = exercised["key"]
    secret = key.rsplit("_", 1)[1]  # obd_sk_<public id>_<secret>
    user = "user-marker-5f1c9e"
    wrong = key[: -len(secret)] + "W" * len(secret)  # a refused key: its path logs and audits
    for path in ("/v1/sessions", "/v1/usage"):
        assert httpx.get(f"{traced.url}{path}", params={"api_key": key, "user": user}).status_code == 200
        with_header = httpx.get(f"{traced.url}{path}", params={"user": user}, headers=Api.auth(key))
        assert with_header.status_code == 200, with_header.text
        refused = httpx.get(f"{traced.url}{path}", params={"api_key": wrong, "user": user})
        assert refused.status_code == 401, refused.text
    app_id = exercised["app_id"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        served = [s for s in list(traced.spans) if s.attributes.get("obdal.app_id") == app_id]
        if sum(s.name in {"GET /v1/sessions", "GET /v1/usage"} for s in served) >= 4:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"no spans for the GET requests; got {[s.name for s in traced.spans]}")
    time.sleep(0.5)  # the refused requests' spans: same batch or the next one
    gets = [s for s in list(traced.spans) if s.name.startswith("GET /v1/")]
    assert any("http.url" in s.attributes or "url.full" in s.attributes for s in gets)  # recorded, stripped
    exported = json.dumps([[s.attributes, s.events, s.resource] for s in list(traced.spans)])
    metrics_text = httpx.get(f"{traced.url}/metrics", headers=Api.auth(METRICS_TOKEN)).text
    for where, text in (("spans", exported), ("logs", traced.process.log()), ("metrics", metrics_text)):
        for needle in (key, secret, wrong[-len(secret) :], user, "api_key="):
            assert needle not in text, f"{needle!r} in the {where}"


def test_json_logs_carry_the_trace_id(traced: Traced, exercised: dict[str, str]) -> None:
    upload = traced.trace_of("POST /v1/files", **{"obdal.app_id": exercised["app_id"]})
    lines = [json.loads(line) for line in traced.process.log().splitlines() if line.startswith("{")]
    indexed = [line for line in lines if exercised["file_id"] in line["msg"] and "indexed" in line["msg"]]
    assert indexed, lines[-20:]
    assert indexed[0]["trace_id"] == upload[0].trace_id


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of metric ``name`` in a Prometheus text exposition."""
    found = []
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        labels_text, _, value = line[len(name) + 1 :].rpartition("} ")
        labels = dict(part.split("=", 1) for part in labels_text.split(",") if part)
        found.append(({k: v.strip('"') for k, v in labels.items()}, float(value)))
    return found


def test_metrics_are_scrapable_by_route_with_chat_and_queue_figures(
    traced: Traced, exercised: dict[str, str]
) -> None:
    httpx.get(f"{traced.url}/v1/files/nope", headers=Api.auth(exercised["key"]))  # a 404 by route
    # The consumer samplers run on their own period: wait for one that saw the queues drained.
    deadline = time.monotonic() + 15
    while True:
        response = httpx.get(f"{traced.url}/metrics", headers=Api.auth(METRICS_TOKEN))
        assert response.status_code == 200
        text = response.text
        pending = {labels["consumer"]: v for labels, v in _samples(text, "obdal_consumer_pending")}
        if pending == {"ingest": 0.0, "metering": 0.0} or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert response.headers["content-type"].startswith("text/plain")
    for refused in ({}, Api.auth(ADMIN)):  # the token set for /metrics, and no other
        denied = httpx.get(f"{traced.url}/metrics", headers=refused)
        assert denied.status_code == 401
        assert denied.json()["error"]["code"] == "invalid_metrics_token"
    requests = _samples(text, "obdal_http_requests_total")
    assert any(
        labels["http_route"] == "/v1/chat" and labels["http_response_status_code"] == "200" and value >= 1
        for labels, value in requests
    ), requests
    errors = _samples(text, "obdal_http_errors_total")
    assert any(
        labels["http_route"].startswith("/v1/files/{") and labels["http_response_status_code"] == "404"
        for labels, _ in errors
    ), errors
    assert not any(labels["http_route"] == "/v1/chat" for labels, _ in errors)
    assert _samples(text, "obdal_chat_time_to_first_token_seconds_count")[0][1] >= 1
    assert any(
        labels.get("obdal_outcome") == "end"
        for labels, _ in _samples(text, "obdal_chat_duration_seconds_count")
    )
    tokens = {labels["gen_ai_token_type"]: v for labels, v in _samples(text, "obdal_chat_tokens_total")}
    assert tokens["input"] > 0
    assert tokens["output"] > 0
    assert _samples(text, "obdal_chat_cost_USD_total")
    assert pending == {"ingest": 0.0, "metering": 0.0}
    ages = {labels["consumer"] for labels, _ in _samples(text, "obdal_consumer_oldest_age_seconds")}
    assert ages == {"ingest", "metering"}


def test_a_worker_process_names_its_service_and_serves_metrics_on_its_port(
    servers: Servers, tmp_path: Path
) -> None:
    """The production layout: ``obdal-metering`` alone exports as service ``obdal-metering``."""
    receiver, spans = start_receiver()
    nats = nats_server(tmp_path).start()  # its own bus: no other test's metering shares its consumer
    metrics_port = free_port()
    env = clean_env(
        OBDAL_NATS_URL=nats.url,
        OBDAL_MONGO_URL=servers.mongo.url,
        OBDAL_MONGO_DB="worker-metrics",
        OBDAL_METRICS_PORT=str(metrics_port),
        OBDAL_METRICS_SAMPLE_S="0.2",
        OBDAL_OTEL_EXPORTER="otlp",
        OBDAL_OTEL_ENDPOINT=f"http://127.0.0.1:{receiver.server_address[1]}",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    process = start_process([str(BIN / "obdal-metering")], env, tmp_path / "metering.log")
    try:
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        wait_http(url, process)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _samples(httpx.get(url).text, "obdal_consumer_pending"):
            time.sleep(0.2)
        ((labels, pending),) = _samples(httpx.get(url).text, "obdal_consumer_pending")
        assert labels["consumer"] == "metering"
        assert pending == 0.0
        # A status request over NATS is a span of the metering process.
        subprocess.run(
            [str(BIN / "python"), "-c", _STATUS_REQUEST, nats.url],
            check=True,
            timeout=30,
            capture_output=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(s.name == "metering.status" for s in spans):
            time.sleep(0.1)
        assert {s.service for s in spans if s.name == "metering.status"} == {"obdal-metering"}
    finally:
        assert process.stop() == 0, process.log()
        nats.stop()
        receiver.shutdown()


_STATUS_REQUEST = """
import asyncio, sys
import nats

async def main():
    nc = await nats.connect(sys.argv[1])
    await nc.request("obdal.status.metering", b"{}", timeout=10)
    await nc.close()

asyncio.run(main())
"""
