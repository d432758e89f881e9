"""The e-mail of a new handoff (docs/handoff.md): a customer asked for a person, the app's support
address hears of it, with the conversation so far and where to answer.

Durable and once, beside the webhook deliveries, never in their way:

- **Queued with the event.** While the ``handoff.requested`` event is fanned out (before it is
  acked), the app's ``notify_email`` is read from the gateway's ``obdal_apps`` bucket (read only)
  and the e-mail, rendered, is stored in MongoDB ``handoff_emails`` under an id derived from app
  and handoff, by an upsert that never overwrites: the event redelivered, or published twice, is
  still one e-mail. No SMTP is spoken there: the stream's consumer only waits on the store, as it
  does for the deliveries (which are stored first).
- **Sent apart.** Each replica's mailer task claims due e-mails by a conditional update (its
  ``next_at`` moved past the longest attempt, so one replica sends each) and sends a few at once
  over SMTP (``aiosmtplib``). A server that is down, refuses for now (4xx) or times out is tried
  again after each delay of ``OBDAL_SMTP_RETRY_SCHEDULE`` (59 min in all); a permanent refusal
  (5xx), or the schedule's end, gives it up, with an error log line and a ``handoff.email_failed``
  audit entry. Sent or given up, the e-mail's text (the conversation) is dropped from the store;
  the record of it stays, which is what makes a later copy of the event send nothing.
- **Once, almost always.** A replica that dies after the server took the e-mail but before it
  recorded that sends it again once its claim runs out; the same ``Message-ID`` lets mail
  clients show it once.
- **Headers are the operator's.** Whatever the customer typed (name, e-mail, reason, messages)
  goes into the body, or through :mod:`obdal_webhooks.addresses` into a header as one line or one
  plain address: it can never add a header (a ``Bcc:``) or a recipient. The envelope's recipient is
  the app's address alone, given to the server explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import aiosmtplib
import msgspec
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from pymongo import ASCENDING, AsyncMongoClient, ReturnDocument

from obdal_common.messaging import read_record
from obdal_common.schemas import AppRecord, DependencyStatus, HookEvent
from obdal_webhooks.addresses import clean_address, header_text, mailbox, parse_mailbox
from obdal_webhooks.audit import record_audit
from obdal_webhooks.settings import WebhooksSettings

__all__ = ["HandoffMail", "MailStore", "Mailer", "build_message", "mail_id", "render"]

log = logging.getLogger(__name__)

# E-mails one replica sends at once (handoffs are people asking for people: few).
_CONCURRENCY = 4
# A claim outlives the longest attempt by this much.
_CLAIM_MARGIN_S = 30.0
# An attempt is a handful of SMTP steps (connect, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA), each
# bounded by OBDAL_SMTP_TIMEOUT_S; the whole is bounded by this many of them.
_STEPS = 4
_WINDOW = timedelta(hours=1)
_ERROR_CHARS = 300
# What of a conversation the e-mail shows: each message up to this, the newest first kept.
_MESSAGE_CHARS = 4000
_TRANSCRIPT_CHARS = 60_000
_SUBJECT_QUESTION_CHARS = 80
_KV_KEY = re.compile(r"[A-Za-z0-9_-]{1,128}")
# Everything of a body line but newlines and tabs that is a control character (escape sequences,
# CR, NUL, Unicode line and paragraph separators, bidirectional overrides).
_BODY_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_ROLES = {"user": "Customer", "assistant": "Assistant", "agent": "Support"}


def mail_id(app_id: str, handoff_id: str) -> str:
    """The e-mail of one handoff: its record's id, whatever event carried it."""
    return "eml_" + hashlib.sha256(f"{app_id} {handoff_id}".encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class HandoffMail:
    """What an e-mail says; its From, Date and Message-ID are added when it is sent."""

    to: str
    subject: str
    body: str
    reply_to: str | None = None
    reply_name: str = ""


def _text(value: object) -> str:
    """A body's text from what a customer or an app wrote: lines kept, control characters gone."""
    if not isinstance(value, str):
        return ""
    return _BODY_CONTROL.sub("", value.replace("\r\n", "\n").replace("\r", "\n")).strip()


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + " [...shortened]"


def _indent(text: str, by: int) -> str:
    return "\n".join(" " * by + line if line else "" for line in text.split("\n"))


def _when(value: object) -> str:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            at = datetime.fromisoformat(value)
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
            return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return header_text(value, 40)


def _transcript(messages: object) -> tuple[list[dict[str, Any]], str | None]:
    """The transcript's well-formed messages, and its first question."""
    found = [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
    question = next((_text(m.get("content")) for m in found if m.get("role") == "user"), None)
    return found, question or None


def _conversation(messages: list[dict[str, Any]]) -> list[str]:
    blocks = []
    for message in messages:
        role = message.get("role")
        who = _ROLES.get(role, "Message") if isinstance(role, str) else "Message"
        name = header_text(message.get("name"), 80)
        if name:
            who = f"{who} ({name})"
        content = _shorten(_text(message.get("content")), _MESSAGE_CHARS) or "(empty)"
        blocks.append(f"{who}, {_when(message.get('timestamp'))}:\n{_indent(content, 2)}\n")
    kept: list[str] = []
    size = 0
    for block in reversed(blocks):  # the newest are the ones a person needs first
        if kept and size + len(block) > _TRANSCRIPT_CHARS:
            break
        kept.append(block)
        size += len(block)
    kept.reverse()
    left_out = len(blocks) - len(kept)
    if left_out:
        kept.insert(0, f"({left_out} earlier messages are not shown here: read them in the console.)\n")
    return kept


def render(event: HookEvent, app: AppRecord | None, *, to: str, public_url: str) -> HandoffMail:
    """The e-mail of a ``handoff.requested`` event (its ``data`` as docs/handoff.md lists it)."""
    data = event.data
    session_id = header_text(data.get("session_id"), 100)
    given = data.get("contact")
    contact: dict[str, Any] = given if isinstance(given, dict) else {}
    email = clean_address(contact.get("email"))
    typed_email = header_text(contact.get("email"), 254)
    name = header_text(contact.get("name"), 120)
    reason = _text(data.get("reason"))
    user = header_text(data.get("user"), 200)
    messages, question = _transcript(data.get("transcript"))
    app_name = header_text(app.name if app else "", 60)

    subject = "A customer asked for a person"
    if question:
        subject += ": " + header_text(question, _SUBJECT_QUESTION_CHARS)
    if app_name:
        subject = f"[{app_name}] {subject}"

    who = f"{name} <{email}>" if name and email else name or email or typed_email
    lines = [
        f"A customer{' of ' + app_name if app_name else ''} asked to talk to a person.",
        "",
        f"Name:      {name or '(not given)'}",
        f"E-mail:    {email or typed_email or '(not given)'}",
        f"Reason:    {_indent(_shorten(reason, 1000), 11).lstrip() if reason else '(not given)'}",
        f"Asked at:  {_when(data.get('requested_at'))}",
    ]
    if user:
        lines.append(f"User:      {user}")
    lines += [f"Session:   {session_id}", f"Handoff:   {header_text(data.get('handoff_id'), 100)}", ""]

    lines += ["Conversation so far (oldest first)", "----------------------------------", ""]
    lines += _conversation(messages) if messages else ["(no message yet)", ""]

    api = public_url or "$OBDAL"
    lines += ["How to answer", "-------------", ""]
    if public_url:
        lines += [
            "In the console (their open chat window shows your reply):",
            f"  {public_url}/console/apps/{event.app_id}/conversations/{session_id}",
            "",
        ]
    lines += [
        "Through the API, with a secret key of the app holding the sessions:write",
        "scope"
        + ("" if public_url else " ($OBDAL: your Obdal's address)")
        + "; their open chat window shows the reply:",
        "",
        f"  curl -X POST {api}/v1/sessions/{session_id}/messages \\",
        '    -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \\',
        '    -d \'{"role": "agent", "content": "Hi, ...", "name": "Your name"}\'',
        "",
        "Once it is settled, so that the assistant answers again:",
        "",
        f"  curl -X POST {api}/v1/sessions/{session_id}/handoff/resolve \\",
        '    -H "Authorization: Bearer $KEY"',
        "",
    ]
    if email:
        lines += [
            f"Replying to this e-mail writes to {who}",
            "by e-mail instead: their chat window does not show such a reply.",
        ]
    elif typed_email:
        lines.append("The e-mail address they gave does not look valid: answer in the chat.")
    else:
        lines.append("They left no e-mail address: answer in the chat.")
    lines += ["", "-- ", "Sent by Obdal: this address is the app's handoff notify_email."]
    return HandoffMail(to=to, subject=subject, body="\n".join(lines) + "\n", reply_to=email, reply_name=name)


def build_message(
    mail: HandoffMail, *, sender: tuple[str, str], message_id: str, handoff_id: str, at: datetime
) -> EmailMessage:
    """The message as sent: every header from the operator's settings or made safe."""
    message = EmailMessage()
    message["From"] = mailbox(*sender)
    message["To"] = Address(addr_spec=mail.to)
    if mail.reply_to:
        message["Reply-To"] = mailbox(mail.reply_name, mail.reply_to)
    message["Subject"] = header_text(mail.subject, 200)
    message["Date"] = format_datetime(at)
    message["Message-ID"] = f"<{message_id}>"
    # RFC 3834: no out-of-office answer to this one, please.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Obdal-Handoff"] = header_text(handoff_id, 100)
    message.set_content(mail.body)
    return message


# Refusals with a 5xx code that a retry may still get past (a sign-in the operator fixes, a greeting).
_RETRIED = (aiosmtplib.SMTPAuthenticationError, aiosmtplib.SMTPConnectResponseError, aiosmtplib.SMTPHeloError)


def _permanent(error: Exception) -> bool:
    """A refusal that no retry mends (5xx: no such mailbox, message refused); a server down, a
    4xx or a failed sign-in (the operator may fix it meanwhile) is tried again."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return all(500 <= r.code < 600 for r in error.recipients)
    if isinstance(error, _RETRIED):
        return False
    return isinstance(error, aiosmtplib.SMTPResponseException) and 500 <= error.code < 600


def _describe(error: BaseException) -> str:
    said = str(error).strip()
    return (f"{type(error).__name__}: {said}" if said else type(error).__name__)[:_ERROR_CHARS]


class MailStore:
    """The handoff e-mails (MongoDB ``handoff_emails``, this service's): the queue and the record."""

    def __init__(self, mongo: AsyncMongoClient[dict[str, Any]], db: str) -> None:
        self._mails = mongo[db].handoff_emails

    async def ensure_indexes(self) -> None:
        await self._mails.create_index([("state", ASCENDING), ("next_at", ASCENDING)])
        await self._mails.create_index([("app_id", ASCENDING), ("session_id", ASCENDING)])
        await self._mails.create_index([("app_id", ASCENDING), ("created_at", ASCENDING)])

    async def exists(self, mail: str) -> bool:
        return await self._mails.find_one({"_id": mail}, {"_id": 1}) is not None

    async def created_since(self, app_id: str, since: datetime) -> int:
        return await self._mails.count_documents({"app_id": app_id, "created_at": {"$gte": since}})

    async def add(self, mail: str, doc: dict[str, Any]) -> bool:
        """Queue it unless it is there already (sent, given up or pending): whether it was new."""
        result = await self._mails.update_one({"_id": mail}, {"$setOnInsert": doc}, upsert=True)
        return result.upserted_id is not None

    async def claim(self, now: datetime, until: datetime) -> dict[str, Any] | None:
        """The next due e-mail, now this replica's until ``until`` (then due again if not recorded)."""
        return await self._mails.find_one_and_update(
            {"state": "pending", "next_at": {"$lte": now}},
            {"$set": {"next_at": until}},
            sort=[("next_at", ASCENDING)],
            return_document=ReturnDocument.AFTER,
        )

    async def sent(self, doc: dict[str, Any], attempt: dict[str, Any]) -> None:
        await self._mails.update_one(
            {"_id": doc["_id"]},
            {
                "$set": {"state": "sent", "sent_at": attempt["at"], "next_at": None},
                "$push": {"attempts": attempt},
                "$unset": {"mail": ""},  # the conversation leaves the store once it is sent
            },
        )

    async def failed(
        self, doc: dict[str, Any], attempt: dict[str, Any], *, delays: Sequence[float], permanent: bool
    ) -> bool:
        """Log a failed attempt; ``True`` if that was the last (given up), else it waits its delay."""
        step = doc["step"]
        update: dict[str, Any]
        if not permanent and step < len(delays):
            update = {"$set": {"step": step + 1, "next_at": attempt["at"] + timedelta(seconds=delays[step])}}
        else:
            update = {"$set": {"state": "failed", "next_at": None}, "$unset": {"mail": ""}}
        await self._mails.update_one({"_id": doc["_id"]}, {**update, "$push": {"attempts": attempt}})
        return "state" in update["$set"]

    async def erase_sessions(self, app_id: str, session_ids: list[str]) -> int:
        """Drop these sessions' e-mails: a pending one holds the conversation and the contact."""
        found = await self._mails.delete_many({"app_id": app_id, "session_id": {"$in": session_ids}})
        return found.deleted_count

    async def delete_app(self, app_id: str) -> None:
        await self._mails.delete_many({"app_id": app_id})


class Mailer:
    """Queues a handoff's e-mail as its event is fanned out (:meth:`enqueue`) and sends what is due
    (:meth:`run`); does nothing at all unless ``OBDAL_SMTP_HOST`` is set."""

    def __init__(
        self, settings: WebhooksSettings, *, js: JetStreamContext, apps: KeyValue, store: MailStore
    ) -> None:
        self._settings = settings
        self._js = js
        self._apps = apps
        self._store = store
        self._delays = settings.smtp_delays()
        self._sender = parse_mailbox(settings.smtp_from) if settings.email_on else ("", "")
        self._attempt_s = settings.smtp_timeout_s * _STEPS
        self._sending: set[asyncio.Task[None]] = set()
        self.queued = 0
        self.sent = 0
        self.retried = 0
        self.given_up = 0
        self.last_error: str | None = None

    @property
    def enabled(self) -> bool:
        return self._settings.email_on

    async def _app(self, app_id: str) -> AppRecord | None:
        if not _KV_KEY.fullmatch(app_id):
            return None
        try:
            found = await read_record(self._apps, app_id, AppRecord)
        except msgspec.ValidationError as exc:
            log.error("app %s unreadable, no handoff e-mail: %s", app_id, exc)
            return None
        return found[0] if found else None

    async def enqueue(self, event: HookEvent) -> None:
        """Store the e-mail of a ``handoff.requested`` event, once per handoff. Raises only if the
        apps bucket or MongoDB fail (the event is then redelivered); a handoff that gets no e-mail
        (no ``notify_email``, a bad one, the app's hourly cap, malformed data) is logged."""
        if not self.enabled or event.type != "handoff.requested":
            return
        handoff_id = event.data.get("handoff_id")
        if not isinstance(handoff_id, str) or not handoff_id:
            log.error("handoff.requested event %s has no handoff_id: no e-mail", event.event_id)
            return
        mail = mail_id(event.app_id, handoff_id)
        if await self._store.exists(mail):  # the event again (redelivered, or published twice)
            return
        app = await self._app(event.app_id)
        notify = app.handoff.notify_email if app is not None and app.handoff is not None else None
        if not notify:
            return
        to = clean_address(notify)
        if to is None:
            log.warning("app %s: notify_email %r is not one address, no handoff e-mail", event.app_id, notify)
            return
        now = datetime.now(UTC)
        cap = self._settings.smtp_max_per_app_hour
        if await self._store.created_since(event.app_id, now - _WINDOW) >= cap:
            log.warning(
                "app %s: %d handoff e-mails within the hour (OBDAL_SMTP_MAX_PER_APP_HOUR), none for %s",
                event.app_id,
                cap,
                handoff_id,
            )
            return
        try:
            rendered = render(event, app, to=to, public_url=self._settings.public_url)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:  # no retry mends malformed data
            log.error("handoff %s of %s: no e-mail, malformed event: %r", handoff_id, event.app_id, exc)
            return
        session_id = event.data.get("session_id")
        doc: dict[str, Any] = {
            "app_id": event.app_id,
            "handoff_id": handoff_id,
            "session_id": session_id if isinstance(session_id, str) else None,
            "event_id": event.event_id,
            "to": to,
            "state": "pending",
            "created_at": now,
            "next_at": now,
            "step": 0,
            "attempts": [],
            "mail": {
                "subject": rendered.subject,
                "body": rendered.body,
                "reply_to": rendered.reply_to,
                "reply_name": rendered.reply_name,
            },
        }
        if await self._store.add(mail, doc):
            self.queued += 1

    async def run(self, stop: asyncio.Event) -> None:
        if not self.enabled:
            return
        try:
            while not stop.is_set():
                try:
                    await self._fill()
                except Exception as exc:  # MongoDB restarting: the next tick tries again
                    log.warning("handoff e-mail tick failed: %r", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._settings.webhook_tick_s)
        finally:
            for task in list(self._sending):
                task.cancel()
            await asyncio.gather(*self._sending, return_exceptions=True)

    async def _fill(self) -> None:
        while len(self._sending) < _CONCURRENCY:
            now = datetime.now(UTC)
            doc = await self._store.claim(now, now + timedelta(seconds=self._attempt_s + _CLAIM_MARGIN_S))
            if doc is None:
                return
            task = asyncio.create_task(self._attempt(doc), name=f"handoff e-mail {doc['_id']}")
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _attempt(self, doc: dict[str, Any]) -> None:
        try:
            at = datetime.now(UTC)
            error = await self._send(doc, at)
            said = None if error is None else _describe(error)
            attempt: dict[str, Any] = {"at": at, "error": said}
            if error is None:
                await self._store.sent(doc, attempt)
                self.sent += 1
                log.info(
                    "handoff e-mail sent: app=%s handoff=%s to=%s attempts=%d",
                    doc["app_id"],
                    doc["handoff_id"],
                    doc["to"],
                    len(doc["attempts"]) + 1,
                )
                return
            self.last_error = said
            if await self._store.failed(doc, attempt, delays=self._delays, permanent=_permanent(error)):
                await self._given_up(doc, said)
            else:
                self.retried += 1
                log.warning(
                    "handoff e-mail %s of %s not sent, retried later: %s",
                    doc["handoff_id"],
                    doc["app_id"],
                    said,
                )
        except Exception as exc:  # MongoDB lost meanwhile: the claim runs out, the e-mail is due again
            log.warning("handoff e-mail %s interrupted: %r", doc.get("handoff_id"), exc)

    async def _send(self, doc: dict[str, Any], at: datetime) -> Exception | None:
        s = self._settings
        stored = doc.get("mail") or {}
        mail = HandoffMail(
            to=doc["to"],
            subject=stored.get("subject", ""),
            body=stored.get("body", ""),
            reply_to=stored.get("reply_to"),
            reply_name=stored.get("reply_name", ""),
        )
        domain = self._sender[1].partition("@")[2]
        message_id = f"{doc['_id']}@{domain}"  # the same on every attempt
        message = build_message(
            mail, sender=self._sender, message_id=message_id, handoff_id=doc["handoff_id"], at=at
        )
        try:
            async with asyncio.timeout(self._attempt_s):
                await aiosmtplib.send(
                    message,
                    # The envelope, given: never taken from the headers.
                    sender=self._sender[1],
                    recipients=[mail.to],
                    hostname=s.smtp_host,
                    port=s.smtp_port,
                    username=s.smtp_username or None,
                    password=s.smtp_password.get_secret_value() or None,
                    use_tls=s.smtp_security == "tls",
                    start_tls=s.smtp_security == "starttls",
                    timeout=s.smtp_timeout_s,
                )
        except Exception as exc:  # whatever the server or the network did: an attempt that failed
            return exc
        return None

    async def _given_up(self, doc: dict[str, Any], error: str | None) -> None:
        self.given_up += 1
        attempts = len(doc["attempts"]) + 1
        log.error(
            "handoff e-mail given up: app=%s handoff=%s session=%s to=%s attempts=%d last_error=%s",
            doc["app_id"],
            doc["handoff_id"],
            doc.get("session_id"),
            doc["to"],
            attempts,
            error,
        )
        await record_audit(
            self._js,
            "handoff.email_failed",
            app_id=doc["app_id"],
            target=doc["handoff_id"],
            detail={"to": doc["to"], "attempts": str(attempts), "error": error or ""},
            give_up_after=self._settings.event_publish_retry_s,
        )

    async def check(self) -> DependencyStatus:
        """For the service's status: whether e-mail is on, and how it goes (never failing it: an
        SMTP server down delays e-mails, nothing else)."""
        s = self._settings
        if not self.enabled:
            return DependencyStatus(ok=True, detail="off (OBDAL_SMTP_HOST is not set)")
        detail = (
            f"on: {s.smtp_host}:{s.smtp_port} ({s.smtp_security}); since start {self.queued} queued,"
            f" {self.sent} sent, {self.retried} retried, {self.given_up} given up"
        )
        if self.last_error:
            detail += f"; last error: {self.last_error}"
        return DependencyStatus(ok=True, detail=detail)
