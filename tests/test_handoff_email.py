"""The e-mail of a new handoff (docs/handoff.md, docs/webhooks.md#e-mail): a real ``obdal-webhooks``
process on a NATS of this module's own, a real SMTP server on loopback (``aiosmtpd``, no TLS), and
``handoff.requested`` events published onto ``OBDAL_HOOKS`` the way metering publishes them, each
app's ``notify_email`` in the gateway's ``obdal_apps`` bucket the way the gateway writes it.

What arrives: one e-mail with the transcript, the contact and ``Reply-To``; a customer's name
or address with a line break adds no header and no recipient; a server down at first gets the
e-mail once it is up, once; the same event twice (or the handoff in two events) is one e-mail;
no ``notify_email``, no e-mail; an erased session's waiting e-mail is never sent. Also the
settings' checks, without a process.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.js.kv import KeyValue
from pymongo import MongoClient

from obdal.servers import ManagedServer, free_port, nats_server
from obdal_common import subjects
from obdal_common.contract import NatsBus, Webhooks
from obdal_common.errors import ConfigurationError
from obdal_common.hooks import publish_hook
from obdal_common.messaging import close, connect, ensure_topology, key_value
from obdal_common.schemas import AppRecord, DeliveriesErase, HandoffConfig, StatusQuery, encode
from obdal_common.settings import load_settings
from obdal_webhooks.settings import WebhooksSettings
from tests.conftest import BIN, Process, Servers, clean_env, start_process
from tests.smtp_receiver import Inbox

SUPPORT = "support@shop.example"
SENDER = "obdal@obdal.example"
PUBLIC_URL = "https://obdal.example.com"
DB = "handoff_email_test"
# Seconds each wait for an e-mail may take (the service polls every 0.1 s, retries every 0.3 s).
WAIT_S = 15.0


@dataclass
class Env:
    nc: NATS
    apps: KeyValue
    inbox: Inbox
    mongo: Any
    service: Process

    async def app(self, *, notify: str | None = SUPPORT, handoff: bool = True, name: str = "Shop") -> str:
        """A new app as the gateway stores it, its handoff e-mail going to ``notify``."""
        app_id = f"app_{uuid.uuid4().hex[:12]}"
        config = HandoffConfig(enabled=True, notify_email=notify) if handoff else None
        record = AppRecord(app_id=app_id, name=name, created_at=datetime.now(UTC), handoff=config)
        await self.apps.put(app_id, encode(record))
        return app_id

    async def handoff(
        self,
        app_id: str,
        *,
        handoff_id: str | None = None,
        event_id: str | None = None,
        contact: dict[str, Any] | None = None,
        reason: str | None = "The answer did not help",
        question: str = "Where is my parcel? It was due on Monday.",
    ) -> dict[str, Any]:
        """Publish a ``handoff.requested`` event shaped as docs/handoff.md says; its data."""
        handoff_id = handoff_id or f"hof_{uuid.uuid4().hex[:12]}"
        now = datetime.now(UTC)
        data = {
            "handoff_id": handoff_id,
            "session_id": f"sess_{uuid.uuid4().hex[:12]}",
            "user": "customer-42",
            "reason": reason,
            "contact": contact,
            "requested_at": now.isoformat(),
            "transcript": [
                {"role": "user", "content": question, "timestamp": (now - timedelta(seconds=9)).isoformat()},
                {
                    "role": "assistant",
                    "content": "I could not find that in the documents.",
                    "timestamp": (now - timedelta(seconds=8)).isoformat(),
                },
                {"role": "user", "content": "Can I talk to someone?", "timestamp": now.isoformat()},
            ],
        }
        published = await publish_hook(
            self.nc.jetstream(),
            "handoff.requested",
            app_id=app_id,
            data=data,
            event_id=event_id or f"handoff.{handoff_id}",
        )
        assert published
        return data

    def record(self, handoff_id: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.mongo.handoff_emails.find_one({"handoff_id": handoff_id})
        return found

    async def sent(self, handoff_id: str) -> dict[str, Any]:
        """The e-mail's record once marked sent: the SMTP server has the message a moment
        before the service, having heard the server's 250, writes that down."""
        deadline = time.monotonic() + WAIT_S
        while (record := self.record(handoff_id)) is None or record["state"] != "sent":
            if time.monotonic() > deadline:
                raise AssertionError(f"not marked sent: {record}\n{self.service.log()[-3000:]}")
            await asyncio.sleep(0.05)
        return record


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedServer]:
    """A NATS of this module's own: no other test's webhooks service consumes these events."""
    nats = nats_server(tmp_path_factory.mktemp("handoff-bus")).start()
    try:
        yield nats
    finally:
        nats.stop()


@pytest.fixture(scope="module")
def inbox() -> Iterator[Inbox]:
    box = Inbox(port=free_port())
    box.start()
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture(scope="module")
async def env(
    bus: ManagedServer, servers: Servers, inbox: Inbox, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Env]:
    mongo: MongoClient[dict[str, Any]] = MongoClient(servers.mongo.url, tz_aware=True)
    mongo.drop_database(DB)
    variables = clean_env(
        OBDAL_NATS_URL=bus.url,
        OBDAL_MONGO_URL=servers.mongo.url,
        OBDAL_MONGO_DB=DB,
        OBDAL_SMTP_HOST="127.0.0.1",
        OBDAL_SMTP_PORT=str(inbox.port),
        OBDAL_SMTP_SECURITY="none",
        OBDAL_SMTP_FROM=f"Obdal <{SENDER}>",
        OBDAL_SMTP_TIMEOUT_S="2",
        OBDAL_SMTP_RETRY_SCHEDULE=",".join(["0.3"] * 40),  # 12 s of retries
        OBDAL_PUBLIC_URL=PUBLIC_URL,
        OBDAL_WEBHOOK_TICK_S="0.1",
    )
    log = tmp_path_factory.mktemp("handoff-webhooks") / "webhooks.log"
    service = start_process([str(BIN / "obdal-webhooks")], variables, log)
    nc = await connect(bus.url, name="test-handoff-email")
    try:
        await ensure_topology(nc.jetstream())
        yield Env(
            nc=nc,
            apps=await key_value(nc.jetstream(), subjects.KV_APPS),
            inbox=inbox,
            mongo=mongo[DB],
            service=await _ready(nc, service),
        )
    finally:
        await close(nc)
        code = service.stop()
        mongo.close()
        assert code == 0, f"obdal-webhooks exited with {code}:\n{service.log()[-4000:]}"


async def _ready(nc: NATS, service: Process) -> Process:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            pytest.fail(f"obdal-webhooks exited with {service.proc.returncode}:\n{service.log()[-4000:]}")
        try:
            status = await Webhooks(NatsBus(nc)).status(StatusQuery())
            if status.ok:
                return service
        except Exception:
            pass
        await asyncio.sleep(0.2)
    pytest.fail(f"obdal-webhooks not ready:\n{service.log()[-4000:]}")


async def test_the_email_has_the_transcript_the_contact_and_reply_to(env: Env) -> None:
    app_id = await env.app()
    data = await env.handoff(app_id, contact={"email": "ana@customer.example", "name": "Ana Lima"})
    got = await asyncio.to_thread(env.inbox.wait, data["handoff_id"])
    message = got.message

    # The envelope: the app's address alone, from the operator's sender.
    assert got.rcpt_tos == [SUPPORT]
    assert got.mail_from == SENDER
    assert message["To"] == SUPPORT
    assert message["From"] == f"Obdal <{SENDER}>"
    assert message["Reply-To"] == "Ana Lima <ana@customer.example>"
    subject = "[Shop] A customer asked for a person: Where is my parcel? It was due on Monday."
    assert message["Subject"] == subject
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"].endswith("@obdal.example>")

    body = got.body
    for expected in (
        "Name:      Ana Lima",
        "E-mail:    ana@customer.example",
        "Reason:    The answer did not help",
        "User:      customer-42",
        f"Session:   {data['session_id']}",
        "  Where is my parcel? It was due on Monday.",
        "  I could not find that in the documents.",
        "  Can I talk to someone?",
        f"{PUBLIC_URL}/console/apps/{app_id}/conversations/{data['session_id']}",
        f"curl -X POST {PUBLIC_URL}/v1/sessions/{data['session_id']}/messages",
    ):
        assert expected in body, (expected, body)
    # Oldest first: the customer, the assistant, the customer again.
    assert (
        body.index("Where is my parcel")
        < body.index("I could not find")
        < body.index("Can I talk to someone?")
    )

    # Recorded once sent, the conversation no longer kept with it.
    record = await env.sent(data["handoff_id"])
    assert "mail" not in record
    status = await Webhooks(NatsBus(env.nc)).status(StatusQuery())
    assert status.dependencies["email"].ok
    assert status.dependencies["email"].detail.startswith(f"on: 127.0.0.1:{env.inbox.port} (none)")


async def test_a_line_break_in_what_the_customer_typed_adds_no_header(env: Env) -> None:
    app_id = await env.app(name="Shop\r\nX-Injected: app")
    data = await env.handoff(
        app_id,
        contact={"email": "ana@customer.example", "name": "Ana\r\nBcc: x@y.example"},
        reason="Please\r\n\r\nBcc: reason@y.example",
        question="Hello\r\nBcc: question@y.example\r\nSubject: spoofed",
    )
    got = await asyncio.to_thread(env.inbox.wait, data["handoff_id"])
    message = got.message
    assert got.rcpt_tos == [SUPPORT], "a customer's text added a recipient"
    names = {name.lower() for name in message}
    assert not names & {"bcc", "cc", "x-injected"}, names
    assert message.get_all("Subject") == [
        "[Shop X-Injected: app] A customer asked for a person: Hello Bcc: question@y.example Subject: spoofed"
    ]
    # The name is the display name of the one Reply-To address, quoted, on its line.
    (reply_to,) = message["Reply-To"].addresses
    assert (reply_to.display_name, reply_to.addr_spec) == ("Ana Bcc: x@y.example", "ana@customer.example")
    head = got.raw.split(b"\r\n\r\n", 1)[0]
    assert not any(line.lower().startswith((b"bcc:", b"x-injected:")) for line in head.split(b"\r\n"))

    # An address with a line break in it is no address: shown in the body, never a header.
    other = await env.handoff(app_id, contact={"email": "ana@customer.example\r\nBcc: z@y.example"})
    got = await asyncio.to_thread(env.inbox.wait, other["handoff_id"])
    assert got.rcpt_tos == [SUPPORT]
    assert "Reply-To" not in got.message
    assert "does not look valid" in got.body


async def test_a_server_down_at_first_gets_the_email_once_it_is_up_and_an_erased_one_never(
    env: Env,
) -> None:
    app_id = await env.app()
    env.inbox.stop()
    try:
        kept = await env.handoff(app_id, contact={"email": "kim@customer.example"})
        erased = await env.handoff(app_id)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            records = [env.record(kept["handoff_id"]), env.record(erased["handoff_id"])]
            if all(r is not None and len(r["attempts"]) >= 2 for r in records):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"no failed attempts recorded:\n{env.service.log()[-3000:]}")
        record = env.record(kept["handoff_id"])
        assert record is not None
        assert record["state"] == "pending"
        assert record["attempts"][0]["error"]
        # Erasing the session (as DELETE /v1/sessions/{id} does) takes its waiting e-mail along.
        await Webhooks(NatsBus(env.nc)).erase_sessions(
            DeliveriesErase(app_id=app_id, session_ids=[erased["session_id"]])
        )
        assert env.record(erased["handoff_id"]) is None
    finally:
        env.inbox.start()
    got = await asyncio.to_thread(env.inbox.wait, kept["handoff_id"])
    assert got.message["Reply-To"] == "kim@customer.example"
    await asyncio.sleep(1.0)  # a second copy, or the erased one, would be here by now
    assert len(env.inbox.about(kept["handoff_id"])) == 1
    assert env.inbox.about(erased["handoff_id"]) == []
    record = await env.sent(kept["handoff_id"])
    assert len(record["attempts"]) >= 3
    assert "handoff e-mail sent" in env.service.log()


async def test_the_same_handoff_twice_is_one_email(env: Env) -> None:
    app_id = await env.app()
    data = await env.handoff(app_id)
    handoff_id = data["handoff_id"]
    # The same event again (a retried publish), then the handoff again under another event id
    # (a redelivery past the stream's deduplication window looks just like that).
    await env.handoff(app_id, handoff_id=handoff_id, event_id=f"handoff.{handoff_id}")
    await env.handoff(app_id, handoff_id=handoff_id, event_id=f"again.{handoff_id}")
    await asyncio.to_thread(env.inbox.wait, handoff_id)
    marker = await env.handoff(app_id)  # published after: its e-mail comes after those events' turn
    await asyncio.to_thread(env.inbox.wait, marker["handoff_id"])
    await asyncio.sleep(0.5)
    assert len(env.inbox.about(handoff_id)) == 1


async def test_no_notify_email_no_email(env: Env) -> None:
    silent = [
        await env.app(notify=None),
        await env.app(handoff=False),
        await env.app(notify="not an address\r\nBcc: x@y.example"),
    ]
    unknown = f"app_{uuid.uuid4().hex[:12]}"  # no record at all
    quiet = [await env.handoff(app_id) for app_id in [*silent, unknown]]
    marker = await env.handoff(await env.app())
    await asyncio.to_thread(
        env.inbox.wait, marker["handoff_id"]
    )  # the events before it were handled before it
    await asyncio.sleep(0.5)
    for data in quiet:
        assert env.inbox.about(data["handoff_id"]) == []
        assert env.record(data["handoff_id"]) is None


def test_settings_need_a_sender_with_a_host_and_say_which_variable() -> None:
    off = load_settings(WebhooksSettings)
    assert not off.email_on
    assert (off.smtp_port, off.smtp_security) == (587, "starttls")
    assert sum(off.smtp_delays()) < 3600
    with pytest.raises(ConfigurationError) as missing:
        load_settings(WebhooksSettings, smtp_host="smtp.example.com")
    assert "OBDAL_SMTP_FROM: " in missing.value.message
    with pytest.raises(ConfigurationError) as two:
        load_settings(WebhooksSettings, smtp_host="smtp.example.com", smtp_from="a@b.example, c@d.example")
    assert "OBDAL_SMTP_FROM: " in two.value.message
    with pytest.raises(ConfigurationError) as security:
        load_settings(WebhooksSettings, smtp_host="smtp.example.com", smtp_from=SENDER, smtp_security="ssl")
    assert "OBDAL_SMTP_SECURITY: " in security.value.message
    with pytest.raises(ConfigurationError) as password:
        load_settings(WebhooksSettings, smtp_host="h.example", smtp_from=SENDER, smtp_password="x")
    assert "OBDAL_SMTP_PASSWORD: " in password.value.message
    on = load_settings(
        WebhooksSettings,
        smtp_host="smtp.example.com",
        smtp_from=f"Obdal <{SENDER}>",
        smtp_security="tls",
        smtp_username="obdal",
        smtp_password="hunter2-secret",
    )
    assert on.email_on
    assert "hunter2" not in repr(on)


def test_a_service_with_a_host_and_no_sender_exits_naming_the_variable(tmp_path: Path) -> None:
    process = start_process(
        [str(BIN / "obdal-webhooks")], clean_env(OBDAL_SMTP_HOST="smtp.example.com"), tmp_path / "w.log"
    )
    assert process.proc.wait(timeout=30) == 2
    assert "OBDAL_SMTP_FROM" in process.log()
