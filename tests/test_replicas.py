"""Two gateways and two metering replicas on one NATS and one Redis (docs/scaling.md,
docs/reliability.md#replicas): a key revoked through either gateway is refused by both within
1 s; a key limited to N requests a minute gets N in total, whichever gateway each request
reaches; usage and sessions read the same through both; a metering replica killed (SIGKILL)
while answers are being metered loses and doubles nothing."""

from __future__ import annotations

import collections
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from pymongo import MongoClient

from obdal.servers import free_port
from tests.api import Api
from tests.conftest import BIN, Process, Servers, own_bus, start_process, wait_http, wait_service
from tests.upstream import MODEL, Upstream, serve_upstream

DB = "replicas"
TOKEN = "replicas-admin"


@dataclass
class Replicas:
    a: Api  # the gateway of `obdal up` (with chat, ingest and webhooks)
    b: Api  # `obdal-gateway` alone
    metering: list[Process]
    metering_env: dict[str, str]
    db: Any

    def restart_metering(self, n: int) -> None:
        """Replica ``n`` started again (what an orchestrator does after it died)."""
        log = self.metering[n].log_path.with_suffix(".restarted.log")
        self.metering[n] = start_process([str(BIN / "obdal-metering")], self.metering_env, log)


@pytest.fixture(scope="module")
def replicas(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    base = tmp_path_factory.mktemp("replicas")
    upstream = serve_upstream(Upstream())
    mongo: MongoClient[dict[str, Any]] = MongoClient(servers.mongo.url, tz_aware=True)
    mongo.drop_database(DB)
    processes: list[Process] = []
    metering: list[Process] = []
    try:
        with own_bus(base) as bus:
            ports = [free_port(), free_port()]
            extra = {
                "OBDAL_MONGO_URL": servers.mongo.url,
                "OBDAL_MONGO_DB": DB,
                "OBDAL_CHAT_MODEL": f"openai/{MODEL}",
                "OBDAL_CHAT_API_BASE": f"http://127.0.0.1:{upstream.server_address[1]}/v1",
                "OBDAL_MAX_CONCURRENT_ANSWERS_PER_KEY": "64",
            }
            env = [bus.env(port=port, admin_token=TOKEN, **extra) for port in ports]
            up_env = {**env[0], "OBDAL_SERVICES": "gateway,chat,ingest,webhooks"}
            processes.append(start_process([str(BIN / "obdal"), "up"], up_env, base / "up.log"))
            processes.append(start_process([str(BIN / "obdal-gateway")], env[1], base / "gateway-b.log"))
            # A replica a test restarts replaces its entry in this list, so it is stopped too.
            metering += [
                start_process([str(BIN / "obdal-metering")], env[0], base / f"metering-{n}.log")
                for n in range(2)
            ]
            urls = [f"http://127.0.0.1:{port}" for port in ports]
            for url, process in zip(urls, processes, strict=True):
                wait_http(f"{url}/v1/status/live", process)
            for service in ("chat", "metering"):
                wait_service(urls[0], service, timeout=120)
            yield Replicas(
                a=Api(urls[0], TOKEN),
                b=Api(urls[1], TOKEN),
                metering=metering,
                metering_env=env[0],
                db=mongo[DB],
            )
            for process in processes + metering:
                assert process.stop() == 0, process.log()[-3000:]
    finally:
        for process in processes + metering:
            process.stop()
        mongo.drop_database(DB)
        mongo.close()
        upstream.shutdown()
        upstream.server_close()


def test_a_key_revoked_through_either_gateway_is_refused_by_both_within_a_second(
    replicas: Replicas,
) -> None:
    app_id = replicas.a.create_app("revoke")
    for revoking, other in ((replicas.a, replicas.b), (replicas.b, replicas.a)):
        created = revoking.create_key(app_id)
        for gateway in (revoking, other):
            assert gateway.http.get("/v1/files", headers=gateway.auth(created["key"])).status_code == 200
        assert revoking.admin.delete(f"/v1/admin/keys/{created['key_id']}").status_code == 200
        revoked_at = time.monotonic()
        for gateway in (revoking, other):
            while (
                response := gateway.http.get("/v1/files", headers=gateway.auth(created["key"]))
            ).status_code == 200:
                assert time.monotonic() - revoked_at < 1.0, f"{gateway.url} accepts a revoked key after 1 s"
                time.sleep(0.01)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "key_revoked"


def test_a_rate_limit_holds_across_both_gateways(replicas: Replicas) -> None:
    limit = 20
    key = replicas.a.create_key(replicas.a.create_app("limit"), rate_limit_rpm=limit)["key"]
    gateways = [replicas.a, replicas.b]

    def call(n: int) -> int:
        gateway = gateways[n % 2]
        return gateway.http.get("/v1/files", headers=gateway.auth(key)).status_code

    # Twice the limit at once, alternating: one allowance (a request each 3 s after the burst),
    # whichever gateway counts it.
    with ThreadPoolExecutor(8) as pool:
        statuses = collections.Counter(pool.map(call, range(2 * limit)))
    assert statuses == {200: limit, 429: limit}, statuses


def test_usage_and_sessions_read_the_same_through_either_gateway_and_a_killed_metering_replica_loses_nothing(
    replicas: Replicas,
) -> None:
    _, key = replicas.a.new_tenant("metered")
    gateways = [replicas.a, replicas.b]
    questions = 80

    def chat(n: int) -> str:
        gateway = gateways[n % 2]
        reply = gateway.chat(key, f"question {n}", user=f"customer-{n % 5}")
        assert reply.status_code == 200, reply.text
        return str(reply.json()["message_id"])

    with ThreadPoolExecutor(8) as pool:
        answered = list(pool.map(chat, range(questions // 2)))
        # Mid-load, while the answers so far are being metered in batches.
        replicas.metering[0].stop(signal.SIGKILL)
        stored_then = replicas.db.usage_events.count_documents({})
        print(f"\nmetering replica killed with {stored_then} of {len(answered)} answers metered")
        answered += list(pool.map(chat, range(questions // 2, questions)))
    replicas.restart_metering(0)

    usage = replicas.a.wait_usage(key, questions, timeout=60)
    assert usage["total_requests"] == questions, usage
    # Turns are stored apart from usage; what the killed replica held unacked is redelivered.
    deadline = time.monotonic() + 90
    while True:
        metered, stored = (
            collections.Counter(d["message_id"] for d in collection.find({}, {"message_id": 1}))
            for collection in (replicas.db.usage_events, replicas.db.turns)
        )
        if len(stored) >= questions or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for counted in (metered, stored):
        assert sorted(counted) == sorted(answered)
        assert set(counted.values()) == {1}, "something was stored twice"

    # The same figures and the same sessions, whichever gateway is asked.
    assert replicas.b.usage(key) == usage
    # A batch's summaries are refreshed just after its turns are stored.
    while len(sessions := replicas.a.sessions(key, include_all="true")) < questions:
        assert time.monotonic() < deadline, f"{len(sessions)} of {questions} sessions listed"
        time.sleep(0.2)
    assert len(sessions) == questions
    assert replicas.b.sessions(key, include_all="true") == sessions
    some = sessions[0]["session_id"]
    history = [g.http.get(f"/v1/sessions/{some}", headers=g.auth(key)).json() for g in gateways]
    assert history[0] == history[1]
    assert [m["role"] for m in history[0]["messages"]] == ["user", "assistant"]
