"""Metering stopped while chats happen, then started: usage and sessions are exact, nothing is lost.

``obdal up`` runs without metering (``OBDAL_SERVICES``) on a NATS of this module's own,
and ``obdal-metering`` is its own process, stopped and started around the chats.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from obdal.servers import ManagedServer, free_port, nats_server
from obdal.stack import StackSettings
from obdal_common.errors import ConfigurationError
from obdal_common.settings import load_settings
from tests.api import Api
from tests.conftest import BIN, Process, Servers, clean_env, start_process, wait_http
from tests.faults.backends import wait_until

SESSIONS = 10
TURNS = 5  # 50 chats in all while metering is down


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedServer]:
    """A NATS of this module's own, so the shared stack's metering cannot consume these events."""
    server = nats_server(tmp_path_factory.mktemp("outage-bus")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def env(bus: ManagedServer, servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return clean_env(
        OBDAL_NATS_URL=bus.url,
        OBDAL_REDIS_URL=servers.redis.url,
        OBDAL_MONGO_URL=servers.mongo.url,
        OBDAL_MONGO_DB="outage",
        OBDAL_DATA_DIR=str(tmp_path_factory.mktemp("outage-data")),
        OBDAL_ADMIN_TOKEN="outage-admin-token",
    )


@pytest.fixture(scope="module")
def gateway(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    process = start_process(
        [str(BIN / "obdal"), "up"],
        {**env, "OBDAL_GATEWAY_PORT": str(port), "OBDAL_SERVICES": "gateway,chat,ingest"},
        tmp_path_factory.mktemp("outage-stack") / "obdal.log",
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/v1/status/live", process)
    yield url
    assert process.stop() == 0, process.log()[-4000:]


def start_metering(env: dict[str, str], log_dir: Path, url: str) -> Process:
    process = start_process([str(BIN / "obdal-metering")], env, log_dir / f"metering-{time.monotonic()}.log")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.proc.poll() is not None:
            pytest.fail(process.log())
        if httpx.get(f"{url}/v1/status", timeout=5).json()["services"]["metering"].get("ok"):
            return process
        time.sleep(0.2)
    pytest.fail(f"metering never reported ready:\n{process.log()}")


def converse(api: Api, key: str, turns: int) -> list[dict[str, Any]]:
    """``turns`` turns of one session, alternating JSON and streamed answers; their usages."""
    usages: list[dict[str, Any]] = []
    session: dict[str, str] = {}
    for n in range(turns):
        if n % 2:
            reply = api.chat_stream(key, f"follow-up {n}", **session)
            assert reply.status == 200
            end = reply.one("end")
        else:
            response = api.chat(key, f"question {n}", **session)
            assert response.status_code == 200, response.text
            end = response.json()
        session = {"session_id": end["session_id"]}
        usages.append({"session_id": end["session_id"], **end["usage"]})
    return usages


def _listed(api: Api, key: str) -> dict[str, tuple[int, int]]:
    """Every session of the key's app, paged four at a time: its message count and tokens."""
    return {i["session_id"]: (i["message_count"], i["total_tokens"]) for i in api.sessions(key, limit=4)}


def test_chats_while_metering_is_stopped_are_all_counted_once_it_starts(
    gateway: str, env: dict[str, str], tmp_path: Path
) -> None:
    api = Api(gateway, "outage-admin-token")
    _, key = api.new_tenant("outage")
    metering = start_metering(env, tmp_path, gateway)
    before = converse(api, key, 2)
    assert api.wait_usage(key, 2)["total_requests"] == 2
    assert metering.stop() == 0, metering.log()

    unavailable = api.http.get("/v1/usage", headers=api.auth(key))
    assert unavailable.status_code == 503
    assert unavailable.json()["error"]["code"] == "metering_unavailable"
    with ThreadPoolExecutor(5) as pool:
        during = [
            u for usages in pool.map(lambda _: converse(api, key, TURNS), range(SESSIONS)) for u in usages
        ]
    assert len(during) == SESSIONS * TURNS

    metering = start_metering(env, tmp_path, gateway)
    try:
        everything = before + during
        body = api.wait_usage(key, len(everything))
        time.sleep(0.5)  # anything still in flight would now show up as double counting
        body = api.usage(key)
        assert body["total_requests"] == len(everything)
        assert body["total_tokens"] == sum(u["total_tokens"] for u in everything)
        assert body["prompt_tokens"] == sum(u["prompt_tokens"] for u in everything)

        expected: dict[str, tuple[int, int]] = {}
        for usage in everything:
            count, tokens = expected.get(usage["session_id"], (0, 0))
            expected[usage["session_id"]] = (count + 2, tokens + usage["total_tokens"])
        # Turns are stored apart from usage: wait until every session shows all of its turns.
        wait_until(lambda: _listed(api, key) == expected, timeout=30, what="every turn stored")
    finally:
        assert metering.stop() == 0, metering.log()


def test_obdal_services_names_known_services_only() -> None:
    assert load_settings(StackSettings, services=" gateway , metering").services == "metering,gateway"
    for wrong in ("", "gateway,billing", ","):
        with pytest.raises(ConfigurationError, match="OBDAL_SERVICES"):
            load_settings(StackSettings, services=wrong)
