"""A webhook receiver on loopback that verifies every request with the ``standardwebhooks`` library,
as a customer's server would; it can be told to fail, or to hang, for a while."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from obdal.servers import free_port

__all__ = ["Received", "Receiver"]


@dataclass(frozen=True)
class Received:
    msg_id: str
    timestamp: int
    type: str
    data: dict[str, Any]
    headers: dict[str, str]
    body: bytes
    verified: bool


@dataclass
class Receiver:
    """``secret``: set once the endpoint exists. ``fail_with``: the status answered (0: accept);
    ``hang_s``: how long each request is held before it is answered."""

    secret: str = ""
    fail_with: int = 0
    hang_s: float = 0.0
    accepted: list[Received] = field(default_factory=list)
    refused: list[Received] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    Webhook(receiver.secret).verify(body, headers)
                    verified = True
                except WebhookVerificationError:
                    verified = False
                payload = json.loads(body)
                got = Received(
                    msg_id=headers.get("webhook-id", ""),
                    timestamp=int(headers.get("webhook-timestamp", "0")),
                    type=payload["type"],
                    data=payload["data"],
                    headers=headers,
                    body=body,
                    verified=verified,
                )
                if receiver.hang_s:
                    time.sleep(receiver.hang_s)
                status = receiver.fail_with or (204 if verified else 401)
                with receiver._lock:
                    (receiver.accepted if status < 300 else receiver.refused).append(got)
                try:
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:  # the sender gave up waiting
                    pass

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def of_type(self, event_type: str) -> list[Received]:
        with self._lock:
            return [r for r in self.accepted if r.type == event_type]

    def wait(self, event_type: str, count: int = 1, *, timeout: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.of_type(event_type)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        with self._lock:
            seen = [r.type for r in self.accepted]
        raise AssertionError(f"{count} {event_type} not received in {timeout} s; received {seen}")
