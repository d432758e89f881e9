"""A stack on servers of its own (NATS, Redis, MongoDB with on-disk data), for tests that stop them.

Stopping the session's shared servers would disturb every other test, so the
outage tests run ``obdal up`` (gateway, metering, webhooks), ``obdal-chat`` and a separate
``obdal-ingest`` process against these, and restart them on the same port and
data directory as an operator would.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from obdal.servers import ManagedServer, free_port, mongo_server, nats_server, redis_server
from tests.api import Api
from tests.conftest import BIN, Process, clean_env, start_process, wait_http

ADMIN = "outage-admin-token"
INGEST_ACK_WAIT_S = 3
INGEST_MAX_DELIVER = 3


@dataclass
class OutageStack:
    base: Path
    nats: ManagedServer
    redis: ManagedServer
    mongo: ManagedServer
    url: str
    api: Api
    env: dict[str, str]
    process: Process
    chat: Process
    ingest: Process | None = None
    # Every server and process started, restarted ones included: all are stopped at the end.
    servers: list[ManagedServer] = field(default_factory=list)
    processes: list[Process] = field(default_factory=list)

    def _started(self, server: ManagedServer) -> ManagedServer:
        self.servers.append(server)
        return server

    def restart_nats(self) -> None:
        self.nats = self._started(nats_server(self.base, port=self.nats.port).start())

    def restart_redis(self) -> None:
        self.redis = self._started(redis_server(self.base, port=self.redis.port).start())

    def restart_mongo(self) -> None:
        self.mongo = self._started(mongo_server(self.base, port=self.mongo.port).start())

    def start_ingest(self) -> Process:
        """An ``obdal-ingest`` process on its own index directory (Qdrant local mode).

        Short ack wait and few deliveries, so redeliveries after a kill happen within seconds.
        """
        self.ingest = start_process(
            [str(BIN / "obdal-ingest")],
            {
                **self.env,
                "OBDAL_QDRANT_URL": f"path:{self.base / 'qdrant'}",
                "OBDAL_INGEST_ACK_WAIT_S": str(INGEST_ACK_WAIT_S),
                "OBDAL_INGEST_MAX_DELIVER": str(INGEST_MAX_DELIVER),
                "OBDAL_EMBED_BATCH_SIZE": "4",
            },
            self.base / f"ingest-{time.monotonic()}.log",
        )
        self.processes.append(self.ingest)
        return self.ingest

    def kill_ingest(self) -> None:
        if self.ingest is not None:
            self.ingest.stop(signal.SIGKILL)

    def status(self) -> dict[str, object]:
        body: dict[str, object] = httpx.get(f"{self.url}/v1/status", timeout=10).json()
        return body

    def ready(self, timeout: float = 240) -> None:
        """Wait until every dependency and service reports ready."""
        wait_until(
            lambda: self.status()["status"] == "ok",
            timeout=timeout,
            what="every service ready",
            detail=self.status,
        )


def wait_until(
    check: Callable[[], bool], *, timeout: float, what: str, detail: Callable[[], object] = lambda: ""
) -> float:
    """Poll ``check`` until true; the seconds it took (fails the test after ``timeout``)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what}: not after {timeout} s {detail()}")
        time.sleep(0.2)
    return time.monotonic() - started


@contextlib.contextmanager
def outage_stack(base: Path) -> Iterator[OutageStack]:
    (base / "mongo").mkdir(parents=True, exist_ok=True)
    servers: list[ManagedServer] = []
    processes: list[Process] = []
    try:
        servers.append(nats := nats_server(base).start())
        servers.append(redis := redis_server(base).start())
        servers.append(mongo := mongo_server(base).start())
        port = free_port()
        env = clean_env(
            OBDAL_NATS_URL=nats.url,
            OBDAL_REDIS_URL=redis.url,
            OBDAL_MONGO_URL=mongo.url,
            OBDAL_DATA_DIR=str(base / "data"),
            OBDAL_ADMIN_TOKEN=ADMIN,
            OBDAL_GATEWAY_PORT=str(port),
            # Outages and redelivery, not retrieval quality: the hashing embedder indexes a big file
            # in seconds (the MiniLM default needs minutes on a loaded CI machine).
            OBDAL_EMBED_MODEL="obdal/hashing-384",
            # Webhooks to a receiver on loopback, retried within seconds rather than hours.
            OBDAL_WEBHOOK_ALLOW_HTTP="true",
            OBDAL_OUTBOUND_ALLOW="127.0.0.0/8",
            OBDAL_WEBHOOK_RETRY_SCHEDULE=",".join(["0.5", "1"] + ["2"] * 40),
            OBDAL_WEBHOOK_TICK_S="0.1",
        )
        up = {**env, "OBDAL_SERVICES": "gateway,metering,webhooks"}
        processes.append(process := start_process([str(BIN / "obdal"), "up"], up, base / "obdal.log"))
        # Its own process (as in production): its imports do not stall the gateway's event loop.
        chat_env = {**env, "OBDAL_QDRANT_URL": ":memory:"}
        processes.append(chat := start_process([str(BIN / "obdal-chat")], chat_env, base / "chat.log"))
        url = f"http://127.0.0.1:{port}"
        stack = OutageStack(
            base,
            nats,
            redis,
            mongo,
            url,
            Api(url, ADMIN),
            env,
            process,
            chat,
            servers=servers,
            processes=processes,
        )
        wait_http(f"{url}/v1/status/live", process)
        stack.start_ingest()
        stack.ready()
        yield stack
    finally:
        # Everything stops before an exit code is judged: a failing one must not leave the rest running.
        for started in reversed(processes):  # the ingest workers, chat, then obdal up
            started.stop()
        for server in reversed(servers):
            server.stop()
    assert chat.proc.returncode == 0, chat.log()[-4000:]
    assert process.proc.returncode == 0, process.log()[-4000:]
