"""Slow clients: a client that reads a byte a second holds no chat worker, a response nobody reads
is abandoned after the send timeout, and a thousand slow connections do not exhaust the gateway."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from litestar.types import Receive, Scope, Send

from obdal.servers import free_port
from obdal_gateway.slow_clients import SendTimeout
from tests.api import Api
from tests.conftest import Stack

SEND_TIMEOUT_S = 1.0
SLOW_CLIENTS = 1000


def _slow_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a tiny window: the server must wait
    sock.connect(("127.0.0.1", port))
    return sock


class _Flood:
    """An app that streams 64 MB in 64 KB chunks, noting when its response ended."""

    def __init__(self) -> None:
        self.ended = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for _ in range(1024):
                await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            self.ended.set()


@pytest.fixture
def flood_server() -> Iterator[tuple[int, _Flood]]:
    app = _Flood()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(SendTimeout(timeout_s=SEND_TIMEOUT_S)(app), port=port, log_config=None, lifespan="off")  # type: ignore[arg-type]
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield port, app
    server.should_exit = True
    thread.join(10)


def test_a_response_nobody_reads_is_abandoned_after_the_send_timeout(
    flood_server: tuple[int, _Flood],
) -> None:
    port, app = flood_server
    sock = _slow_socket(port)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    started = time.monotonic()
    assert app.ended.wait(SEND_TIMEOUT_S + 10), "the server still waits for a client that reads nothing"
    assert time.monotonic() - started < SEND_TIMEOUT_S + 5
    # What was buffered is readable, then the connection is closed: far less than the 64 MB.
    sock.settimeout(10)
    received = 0
    try:
        while chunk := sock.recv(1 << 20):
            received += len(chunk)
    except ConnectionResetError:
        pass
    sock.close()
    assert received < 16 * 2**20


def test_a_client_reading_a_byte_a_second_holds_no_worker(stack: Stack) -> None:
    api = Api(stack.url, stack.admin_token)
    _, key = api.new_tenant("slow-reader")
    port = int(stack.url.rsplit(":", 1)[1])
    body = json.dumps({"message": "hello, slowly", "stream": True}).encode()
    sock = _slow_socket(port)
    sock.sendall(
        b"POST /v1/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    try:
        started = time.monotonic()
        read = b""
        # While the client has read only a few bytes, the worker has finished and metered the answer...
        while api.usage(key)["total_requests"] < 1:
            read += sock.recv(1)
            assert time.monotonic() - started < 30, "the answer was not finished while its client was slow"
            time.sleep(1.0)
        assert len(read) < 64
        # ...and the gateway and the workers serve everyone else at once.
        quick = time.monotonic()
        assert api.chat(key, "and me?").status_code == 200
        assert time.monotonic() - quick < 10
    finally:
        sock.close()


def test_a_thousand_slow_clients_do_not_exhaust_the_gateway(stack: Stack) -> None:
    api = Api(stack.url, stack.admin_token)
    _, key = api.new_tenant("slowloris")
    port = int(stack.url.rsplit(":", 1)[1])
    socks = []
    try:
        for _ in range(SLOW_CLIENTS):  # each sends half a request, then a byte now and then
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"POST /v1/chat HTTP/1.1\r\nHost: x\r\n")
            socks.append(sock)
        for n in range(3):
            for sock in socks:
                sock.sendall(b"X-Slow-%d: 1\r\n" % n)
            started = time.monotonic()
            assert httpx.get(f"{stack.url}/v1/status/live", timeout=10).status_code == 200
            assert api.chat(key, "still there?").status_code == 200
            took = time.monotonic() - started
            assert took < 10, f"the gateway took {took:.1f} s with {SLOW_CLIENTS} slow clients"
            time.sleep(1.0)
    finally:
        for sock in socks:
            sock.close()
