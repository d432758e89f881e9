"""Redis down: rate limits and budgets fail open (documented), status says so, recovery is automatic."""

from __future__ import annotations

import time

import httpx
import pytest

from obdal.servers import redis_server
from tests.conftest import LoneGateway


def passed_the_gateway(response: httpx.Response) -> bool:
    """Past the key check and the rate limit: no ingest runs on this bus, so ingest's 503."""
    return response.status_code == 503 and response.json()["error"]["code"] == "ingest_unavailable"


def test_gateway_keeps_serving_without_redis_and_recovers(lone_gateway: LoneGateway) -> None:
    api, gateway, url = lone_gateway.api, lone_gateway.gateway, lone_gateway.url
    _, key = api.new_tenant("outage", rate_limit_rpm=100)

    before = api.http.get("/v1/files", headers=api.auth(key))
    assert passed_the_gateway(before), before.text
    assert before.headers["x-ratelimit-remaining"] == "99"

    lone_gateway.bus.redis.kill()
    during = api.http.get("/v1/files", headers=api.auth(key))
    assert passed_the_gateway(during), "rate limiting fails open"
    assert during.headers["x-ratelimit-limit"] == "100"
    assert "x-ratelimit-remaining" not in during.headers
    status = httpx.get(f"{url}/v1/status", timeout=10)
    assert status.status_code == 503
    assert status.json()["dependencies"]["redis"]["ok"] is False
    assert "rate limiting unavailable" in gateway.log()
    chat = api.chat(key, "hello")  # past the cap on answers in progress: no worker runs on this bus
    assert chat.json()["error"]["code"] == "no_worker_available", chat.text
    assert "answer slots unavailable" in gateway.log()

    bus = lone_gateway.bus
    bus.redis = redis_server(bus.base, port=bus.redis.port).start()
    deadline = time.monotonic() + 20
    while "x-ratelimit-remaining" not in (after := api.http.get("/v1/files", headers=api.auth(key))).headers:
        if time.monotonic() > deadline:
            pytest.fail("rate limiting did not come back with Redis")
        time.sleep(0.2)
    assert passed_the_gateway(after)
    assert httpx.get(f"{url}/v1/status", timeout=10).json()["dependencies"]["redis"]["ok"] is True
