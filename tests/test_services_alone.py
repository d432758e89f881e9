"""Each service runs as its own process against servers given by URL (production layout)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from obdal.servers import ManagedServer, free_port, nats_server, redis_server
from tests.api import Api
from tests.conftest import BIN, Process, Servers, clean_env, start_process, wait_http, wait_service


@pytest.fixture(scope="module")
def own_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ManagedServer, ManagedServer]]:
    """A NATS and a Redis of this module's own, so no other test's workers answer here."""
    base = tmp_path_factory.mktemp("alone")
    nats = nats_server(base).start()
    redis = redis_server(base).start()
    yield nats, redis
    redis.stop()
    nats.stop()


@pytest.fixture(scope="module")
def env(
    own_bus: tuple[ManagedServer, ManagedServer], servers: Servers, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    nats, redis = own_bus
    return clean_env(
        OBDAL_NATS_URL=nats.url,
        OBDAL_REDIS_URL=redis.url,
        OBDAL_MONGO_URL=servers.mongo.url,
        OBDAL_MONGO_DB="alone",
        OBDAL_DATA_DIR=str(tmp_path_factory.mktemp("alone-data")),
        OBDAL_ADMIN_TOKEN="alone-admin-token",
        OBDAL_QDRANT_URL=":memory:",
    )


@pytest.fixture(scope="module")
def gateway(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("gw") / "gateway.log"
    process = start_process([str(BIN / "obdal-gateway")], {**env, "OBDAL_GATEWAY_PORT": str(port)}, log)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/v1/status/live", process)
    yield url
    assert process.stop() == 0, process.log()


def start_service(name: str, env: dict[str, str], log_dir: Path) -> Process:
    return start_process([str(BIN / f"obdal-{name}")], env, log_dir / f"{name}.log")


def test_without_workers_requests_fail_fast_with_503(gateway: str) -> None:
    api = Api(gateway, "alone-admin-token")
    _, key = api.new_tenant("alone")
    status = httpx.get(f"{gateway}/v1/status")
    assert status.status_code == 503
    assert status.json()["status"] == "degraded"
    assert status.json()["dependencies"]["nats"]["ok"] is True
    assert status.json()["dependencies"]["redis"]["ok"] is True

    started = time.monotonic()
    for stream in (False, True):
        response = api.chat(key, "anyone there?", stream=stream)
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "no_worker_available"
    assert time.monotonic() - started < 2, "no worker must be answered at once, not after a timeout"
    response = api.http.get("/v1/usage", headers=api.auth(key))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "metering_unavailable"


def test_workers_join_as_separate_processes(
    gateway: str, env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    logs = tmp_path_factory.mktemp("workers")
    metering = start_service("metering", env, logs)
    # The chat worker alone uses the Qdrant-server code path (qdrant-client local mode).
    chat = start_service("chat", env, logs)
    try:
        wait_service(gateway, "metering")
        wait_service(gateway, "chat")
        api = Api(gateway, "alone-admin-token")
        _, key = api.new_tenant("workers")
        body = api.chat(key, "What is your refund policy?").json()
        assert "could not find" in body["content"]  # nothing uploaded to this index
        assert api.wait_usage(key, 1)["total_requests"] == 1
    finally:
        assert chat.stop() == 0, chat.log()
        assert metering.stop() == 0, metering.log()


def test_invalid_settings_fail_at_start_with_a_clear_message(
    env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    logs = tmp_path_factory.mktemp("bad")
    process = start_process(
        [str(BIN / "obdal-gateway")], {**env, "OBDAL_GATEWAY_PORT": "eighty"}, logs / "gateway.log"
    )
    assert process.proc.wait(60) == 2
    assert "OBDAL_GATEWAY_PORT" in process.log()
    process = start_process(
        [str(BIN / "obdal-ingest")],
        {**env, "OBDAL_CHUNK_TOKENS": "100", "OBDAL_CHUNK_OVERLAP_TOKENS": "150"},
        logs / "ingest.log",
    )
    assert process.proc.wait(60) == 2
    assert "OBDAL_CHUNK_OVERLAP_TOKENS" in process.log()


def test_unreachable_nats_fails_clearly(
    env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    logs = tmp_path_factory.mktemp("unreachable")
    dead = f"nats://127.0.0.1:{free_port()}"
    process = start_process([str(BIN / "obdal-metering")], {**env, "OBDAL_NATS_URL": dead}, logs / "m.log")
    assert process.proc.wait(60) == 1
    assert "cannot connect to NATS" in process.log()
