"""A real SMTP server on loopback (``aiosmtpd``) that keeps what it is given: where handoff e-mails
arrive in the tests (docs/handoff.md)."""

from __future__ import annotations

import email
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

__all__ = ["Inbox", "Received"]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=default_policy)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def body(self) -> str:
        text = self.message.get_content()
        assert isinstance(text, str)
        return text


@dataclass
class Inbox:
    """What the SMTP server on loopback was given; started and stopped at will, on one port."""

    port: int
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    controller: Controller | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert envelope.mail_from is not None
        assert isinstance(envelope.original_content, bytes)
        with self.lock:
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
            )
        return "250 OK"

    def start(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def about(self, handoff_id: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.message["X-Obdal-Handoff"] == handoff_id]

    def wait(self, handoff_id: str, *, timeout: float = 15.0) -> Received:
        """The first e-mail of ``handoff_id``, waiting up to ``timeout`` for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.about(handoff_id)
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no e-mail of {handoff_id} within {timeout} s")

    def __enter__(self) -> Inbox:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
