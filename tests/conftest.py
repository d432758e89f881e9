"""Fixtures: real servers as child processes, and the Obdal stack running against them."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser
from pymongo import MongoClient

from obdal.servers import ManagedServer, free_port, mongo_server, nats_server, redis_server
from obdal_common.processes import die_with_parent
from tests import leftovers
from tests.api import Api
from tests.browser import chromium
from tests.console import OWNER_EMAIL, ensure_owner
from tests.smtp_receiver import Inbox

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# Small limits so the failure paths are cheap to reach.
MAX_UPLOAD_BYTES = 256 * 1024
MAX_MESSAGE_CHARS = 2000
MAX_PAGES = 12
# How long the suite's processes get to exit after its last test before they count as leftovers:
# enough for asynchronous exits (a resource tracker reading EOF, Chromium's helpers), not for a hang.
LEFTOVER_GRACE_S = 5.0
_SUBREAPER = pytest.StashKey[bool]()


def pytest_configure(config: pytest.Config) -> None:
    # Before the first child: from now on the suite's orphans are re-parented to pytest (tests/leftovers.py).
    config.stash[_SUBREAPER] = leftovers.become_subreaper()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fail the run if any process the suite started outlives it; kill those so none is left."""
    if not session.config.stash.get(_SUBREAPER, False):
        return
    left = leftovers.outliving(grace_s=LEFTOVER_GRACE_S)
    if left:
        listed = "\n".join(f"  {process}" for process in left)
        message = (
            f"{len(left)} process(es) started by the suite still running {LEFTOVER_GRACE_S:g} s after it"
            f" ended (now killed); whatever starts a process must stop and wait for it:\n{listed}"
        )
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            print(message, file=sys.stderr)
        else:
            reporter.write("\n")  # after the progress line
            reporter.write_sep("=", "leftover processes", red=True, bold=True)
            reporter.write_line(message)
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        leftovers.kill([process.pid for process in left])
    leftovers.reap_adopted()


@dataclass(frozen=True)
class Servers:
    nats: ManagedServer
    redis: ManagedServer
    mongo: ManagedServer

    def env(self) -> dict[str, str]:
        return {
            "OBDAL_NATS_URL": self.nats.url,
            "OBDAL_REDIS_URL": self.redis.url,
            "OBDAL_MONGO_URL": self.mongo.url,
        }


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """nats-server (JetStream), Redis/Valkey and SecantusDB on free loopback ports, each requiring
    the password generated in ``base`` (their URLs carry it, so every test connects authenticated)."""
    base = tmp_path_factory.mktemp("servers")
    started: list[ManagedServer] = []
    try:
        nats = nats_server(base).start()
        started.append(nats)
        redis = redis_server(base).start()
        started.append(redis)
        mongo = mongo_server(base).start()
        started.append(mongo)
        yield Servers(nats=nats, redis=redis, mongo=mongo)
    finally:
        for server in reversed(started):
            server.stop()


def clean_env(**extra: str) -> dict[str, str]:
    """The test process environment without any OBDAL_* leaking in, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBDAL_")}
    env.update(extra)
    return env


@dataclass
class Process:
    """An Obdal process started by a test, with its log."""

    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_process(args: list[str], env: dict[str, str], log_path: Path) -> Process:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handle = log_path.open("wb")
    # Dies with pytest even if pytest is SIGKILLed; its own children die with it in turn.
    proc = subprocess.Popen(
        args,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        cwd=log_path.parent,
        preexec_fn=functools.partial(die_with_parent, os.getpid()),
    )
    return Process(proc=proc, log_path=log_path)


def wait_http(url: str, process: Process, *, timeout: float = 240, expect: int = 200) -> None:
    """Poll ``url`` until it answers ``expect`` (or fail with the process log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.proc.poll() is not None:
            pytest.fail(f"process exited with {process.proc.returncode}:\n{process.log()[-4000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == expect:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} not ready after {timeout} s:\n{process.log()[-4000:]}")


def wait_service(
    url: str, service: str, *, headers: dict[str, str] | None = None, timeout: float = 60
) -> dict[str, Any]:
    """Poll ``GET /v1/status`` until ``service`` reports ready (a stack answers ``live`` before
    every worker has said hello); the last status body."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = httpx.get(f"{url}/v1/status", headers=headers, timeout=5).json()
        if body["services"].get(service, {}).get("ok"):
            return body
        time.sleep(0.2)
    pytest.fail(f"{service} never reported ready at {url}")


@dataclass(frozen=True)
class Stack:
    url: str
    admin_token: str
    process: Process
    data_dir: Path


@pytest.fixture(scope="session")
def inbox() -> Iterator[Inbox]:
    """The SMTP server on loopback the shared stack sends handoff e-mails to."""
    with Inbox(port=free_port()) as box:
        yield box


@pytest.fixture(scope="session")
def stack(servers: Servers, inbox: Inbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """``obdal up`` (all four services in one process) against the fixture servers."""
    data_dir = tmp_path_factory.mktemp("stack")
    port = free_port()
    token = "test-admin-token-0123456789"
    env = clean_env(
        **servers.env(),
        OBDAL_DATA_DIR=str(data_dir / "data"),
        OBDAL_GATEWAY_PORT=str(port),
        OBDAL_ADMIN_TOKEN=token,
        OBDAL_MAX_UPLOAD_BYTES=str(MAX_UPLOAD_BYTES),
        OBDAL_MAX_MESSAGE_CHARS=str(MAX_MESSAGE_CHARS),
        OBDAL_MAX_PAGES=str(MAX_PAGES),
        # Website sources: the tests' sites are on loopback (tests.website); nothing else private.
        OBDAL_OUTBOUND_ALLOW="127.0.0.0/8",
        OBDAL_SOURCE_TICK_S="0.3",
        OBDAL_CRAWL_DELAY_S="0",
        # Webhooks (tests.test_webhooks): receivers on loopback over http, retried within seconds,
        # a hanging one given up after 2 s, an endpoint failing for 6 s disabled.
        OBDAL_WEBHOOK_ALLOW_HTTP="true",
        OBDAL_WEBHOOK_RETRY_SCHEDULE="0.3,0.6,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1",
        OBDAL_WEBHOOK_TIMEOUT_S="2",
        OBDAL_WEBHOOK_DISABLE_AFTER_S="6",
        OBDAL_WEBHOOK_TICK_S="0.1",
        # Handoff e-mails (tests.test_widget_handoff): to the inbox on loopback, no TLS there.
        OBDAL_SMTP_HOST="127.0.0.1",
        OBDAL_SMTP_PORT=str(inbox.port),
        OBDAL_SMTP_SECURITY="none",
        OBDAL_SMTP_FROM="obdal@obdal.test",
        OBDAL_SMTP_RETRY_SCHEDULE="0.3,0.6,1",
    )
    process = start_process([str(BIN / "obdal"), "up"], env, data_dir / "obdal.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/v1/status", process)
        yield Stack(url=url, admin_token=token, process=process, data_dir=data_dir / "data")
    finally:
        code = process.stop()
        assert code == 0, f"obdal up exited with {code}:\n{process.log()[-4000:]}"


@pytest.fixture(scope="module")
def api(stack: Stack) -> Api:
    """The public API of the shared stack, with its admin token."""
    return Api(stack.url, stack.admin_token)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian Chromium, one per test module (tests.browser.chromium)."""
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def console_owner(api: Api) -> str:
    """The e-mail of the stack's first console owner, an owner of every app (tests.console)."""
    ensure_owner(api)
    return OWNER_EMAIL


@pytest.fixture(scope="module")
def mongo(servers: Servers) -> Iterator[Any]:
    """Metering's database, read directly to check what is (not) stored."""
    client: MongoClient[dict[str, Any]] = MongoClient(servers.mongo.url, tz_aware=True)
    yield client["obdal"]
    client.close()


@dataclass
class Bus:
    """A NATS and a Redis of one test's own, so no other test's workers answer there."""

    nats: ManagedServer
    redis: ManagedServer
    base: Path

    def env(self, *, port: int, admin_token: str, **extra: str) -> dict[str, str]:
        """The environment of Obdal processes on this bus (gateway on ``port``)."""
        return clean_env(
            OBDAL_NATS_URL=self.nats.url,
            OBDAL_REDIS_URL=self.redis.url,
            OBDAL_DATA_DIR=str(self.base / "data"),
            OBDAL_GATEWAY_PORT=str(port),
            OBDAL_ADMIN_TOKEN=admin_token,
            **extra,
        )


@contextlib.contextmanager
def own_bus(base: Path) -> Iterator[Bus]:
    nats = nats_server(base).start()
    try:
        bus = Bus(nats=nats, redis=redis_server(base).start(), base=base)
        try:
            yield bus
        finally:
            bus.redis.stop()  # the test may have replaced it (Redis restarted)
    finally:
        nats.stop()  # also when Redis did not start


@dataclass
class LoneGateway:
    """``obdal-gateway`` alone on a bus of its own: no workers answer it."""

    url: str
    api: Any
    gateway: Process
    bus: Bus


@pytest.fixture
def lone_gateway(tmp_path: Path) -> Iterator[LoneGateway]:
    with own_bus(tmp_path) as bus:
        port = free_port()
        env = bus.env(port=port, admin_token="lone-admin")
        gateway = start_process([str(BIN / "obdal-gateway")], env, tmp_path / "gateway.log")
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{url}/v1/status/live", gateway)
            yield LoneGateway(url=url, api=Api(url, "lone-admin"), gateway=gateway, bus=bus)
        finally:
            assert gateway.stop() == 0, gateway.log()
