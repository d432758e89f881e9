"""Redis down: rate limits and budgets fail open (documented), status says so, recovery is automatic."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from obdal.servers import free_port, nats_server, redis_server
from tests.api import Api
from tests.conftest import BIN, clean_env, start_process, wait_http


def test_gateway_keeps_serving_without_redis_and_recovers(tmp_path: Path) -> None:
    nats = nats_server(tmp_path).start()
    redis = redis_server(tmp_path).start()
    port = free_port()
    env = clean_env(
        OBDAL_NATS_URL=nats.url,
        OBDAL_REDIS_URL=redis.url,
        OBDAL_GATEWAY_PORT=str(port),
        OBDAL_ADMIN_TOKEN="outage-admin",
        OBDAL_DATA_DIR=str(tmp_path / "data"),
    )
    gateway = start_process([str(BIN / "obdal-gateway")], env, tmp_path / "gateway.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/v1/status/live", gateway)
        api = Api(url, "outage-admin")
        _, key = api.new_tenant("outage", rate_limit_rpm=100)

        before = api.http.get("/v1/files", headers=api.auth(key))
        assert before.status_code == 200
        assert before.headers["x-ratelimit-remaining"] == "99"

        redis.kill()
        during = api.http.get("/v1/files", headers=api.auth(key))
        assert during.status_code == 200, "rate limiting fails open"
        assert during.headers["x-ratelimit-limit"] == "100"
        assert "x-ratelimit-remaining" not in during.headers
        status = httpx.get(f"{url}/v1/status", timeout=10)
        assert status.status_code == 503
        assert status.json()["dependencies"]["redis"]["ok"] is False
        assert "rate limiting unavailable" in gateway.log()

        redis = redis_server(tmp_path, port=redis.port).start()
        deadline = time.monotonic() + 20
        while (
            "x-ratelimit-remaining" not in (after := api.http.get("/v1/files", headers=api.auth(key))).headers
        ):
            if time.monotonic() > deadline:
                pytest.fail("rate limiting did not come back with Redis")
            time.sleep(0.2)
        assert after.status_code == 200
        assert httpx.get(f"{url}/v1/status", timeout=10).json()["dependencies"]["redis"]["ok"] is True
    finally:
        assert gateway.stop() == 0, gateway.log()
        redis.stop()
        nats.stop()
