"""An app's webhook endpoints and their signing secrets (NATS KV ``obdal_webhooks``, this service's).

A record changes by compare-and-set only (the API and every replica's deliveries write the same
records: a success clears ``failing_since`` while an owner renames the endpoint). An endpoint's URL
is checked when it is set, as a delivery would check it (scheme, credentials, every address of its
name public unless ``OBDAL_OUTBOUND_ALLOW`` names it); each delivery checks it again at connect time.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from obdal_common import subjects
from obdal_common.errors import Conflict, NotFound, UnprocessableContent
from obdal_common.ids import is_id, new_id
from obdal_common.messaging import keys_matching, read_record
from obdal_common.outbound import OutboundClient
from obdal_common.schemas import (
    WebhookCreate,
    WebhookEndpoint,
    WebhookInfo,
    WebhookList,
    WebhookListQuery,
    WebhookLookup,
    WebhookRotate,
    WebhookSecret,
    WebhookUpdate,
    encode,
)

__all__ = ["EndpointStore", "new_signing_secret", "signing_secrets"]

_MAX_URL_CHARS = 2048
_MAX_DESCRIPTION_CHARS = 500
# Compare-and-set tries before a change gives up (each lost race means another writer went first).
_CAS_TRIES = 20


def new_signing_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets a delivery is signed with now: the newest and those still overlapping."""
    return [s.secret for s in endpoint.secrets if s.expires_at is None or s.expires_at > now]


def _invalid(message: str) -> UnprocessableContent:
    return UnprocessableContent(message, code="invalid_webhook")


def _not_found(endpoint_id: str) -> NotFound:
    return NotFound(f"no webhook endpoint {endpoint_id} in this app", code="webhook_not_found")


@dataclass(frozen=True, slots=True)
class EndpointStore:
    kv: KeyValue
    js: JetStreamContext
    client: OutboundClient
    allow_http: bool
    max_per_app: int

    async def _check_url(self, url: str) -> str:
        url = url.strip()
        if len(url) > _MAX_URL_CHARS:
            raise _invalid(f"url is longer than {_MAX_URL_CHARS} characters")
        scheme = urlsplit(url).scheme.lower()
        if scheme != "https" and not (self.allow_http and scheme == "http"):
            allowed = (
                "https or http" if self.allow_http else "https (http only if OBDAL_WEBHOOK_ALLOW_HTTP is set)"
            )
            raise UnprocessableContent(
                f"url must be {allowed}, not {scheme or 'a URL without a scheme'}", code="scheme_not_allowed"
            )
        await self.client.check_url(url)  # an OutboundRefused (422) says why
        return url

    @staticmethod
    def _description(value: str) -> str:
        if len(value) > _MAX_DESCRIPTION_CHARS:
            raise _invalid(f"description is longer than {_MAX_DESCRIPTION_CHARS} characters")
        return value

    async def _ids(self, app_id: str) -> list[str]:
        return [
            key.split(".", 1)[1] for key in await keys_matching(self.js, subjects.KV_WEBHOOKS, f"{app_id}.*")
        ]

    async def read(self, app_id: str, endpoint_id: str) -> tuple[WebhookEndpoint, int] | None:
        if not is_id("whk", endpoint_id):  # not a KV key either: none such, not a server error
            return None
        return await read_record(self.kv, f"{app_id}.{endpoint_id}", WebhookEndpoint)

    async def find(self, app_id: str, endpoint_id: str) -> WebhookEndpoint:
        found = await self.read(app_id, endpoint_id)
        if found is None:
            raise _not_found(endpoint_id)
        return found[0]

    async def create(self, request: WebhookCreate) -> WebhookInfo:
        url = await self._check_url(request.url)
        description = self._description(request.description)
        if len((await self.list(WebhookListQuery(app_id=request.app_id))).endpoints) >= self.max_per_app:
            raise Conflict(
                f"this app has {self.max_per_app} webhook endpoints, the most it may have",
                code="too_many_webhooks",
            )
        now = datetime.now(UTC)
        secret = new_signing_secret()
        endpoint = WebhookEndpoint(
            endpoint_id=new_id("whk"),
            app_id=request.app_id,
            url=url,
            created_at=now,
            updated_at=now,
            secrets=[WebhookSecret(secret=secret, created_at=now)],
            events=sorted(set(request.events)),
            description=description,
            enabled=request.enabled,
        )
        await self.kv.create(f"{endpoint.app_id}.{endpoint.endpoint_id}", encode(endpoint))
        return WebhookInfo(endpoint=endpoint, secret=secret)

    async def list(self, query: WebhookListQuery) -> WebhookList:
        found = [await self.read(query.app_id, endpoint_id) for endpoint_id in await self._ids(query.app_id)]
        endpoints = sorted((f[0] for f in found if f is not None), key=lambda e: e.created_at)
        return WebhookList(endpoints=endpoints)

    async def get(self, lookup: WebhookLookup) -> WebhookInfo:
        return WebhookInfo(endpoint=await self.find(lookup.app_id, lookup.endpoint_id))

    async def change(
        self, app_id: str, endpoint_id: str, change: Callable[[WebhookEndpoint], WebhookEndpoint | None]
    ) -> WebhookEndpoint:
        """Apply ``change`` by compare-and-set (``None``: nothing to write); the endpoint as stored."""
        for _ in range(_CAS_TRIES):
            found = await self.read(app_id, endpoint_id)
            if found is None:
                raise _not_found(endpoint_id)
            current, revision = found
            changed = change(current)
            if changed is None:
                return current
            try:
                await self.kv.update(f"{app_id}.{endpoint_id}", encode(changed), last=revision)
            except KeyWrongLastSequenceError:
                continue
            return changed
        raise Conflict(f"webhook endpoint {endpoint_id} kept changing, retry", code="webhook_busy")

    async def update(self, request: WebhookUpdate) -> WebhookInfo:
        url = None if request.url is None else await self._check_url(request.url)
        description = None if request.description is None else self._description(request.description)
        now = datetime.now(UTC)

        def apply(current: WebhookEndpoint) -> WebhookEndpoint:
            enabling = request.enabled is True and not current.enabled
            return msgspec.structs.replace(
                current,
                url=url or current.url,
                events=current.events if request.events is None else sorted(set(request.events)),
                description=current.description if description is None else description,
                enabled=current.enabled if request.enabled is None else request.enabled,
                # Enabled again by a person: its failures so far are forgiven.
                disabled_reason=None if enabling else current.disabled_reason,
                failing_since=None if enabling else current.failing_since,
                updated_at=now,
            )

        return WebhookInfo(endpoint=await self.change(request.app_id, request.endpoint_id, apply))

    async def rotate(self, request: WebhookRotate) -> WebhookInfo:
        now = datetime.now(UTC)
        secret = new_signing_secret()
        until = now + timedelta(seconds=max(0.0, request.overlap_s))

        def apply(current: WebhookEndpoint) -> WebhookEndpoint:
            kept = [
                WebhookSecret(
                    secret=s.secret,
                    created_at=s.created_at,
                    expires_at=until if s.expires_at is None else min(s.expires_at, until),
                )
                for s in current.secrets
                if s.expires_at is None or s.expires_at > now
            ]
            return msgspec.structs.replace(
                current, secrets=[WebhookSecret(secret=secret, created_at=now), *kept], updated_at=now
            )

        endpoint = await self.change(request.app_id, request.endpoint_id, apply)
        return WebhookInfo(endpoint=endpoint, secret=secret)

    async def delete(self, app_id: str, endpoint_id: str) -> None:
        await self.find(app_id, endpoint_id)
        await self.kv.purge(f"{app_id}.{endpoint_id}")

    async def delete_app(self, app_id: str) -> int:
        ids = await self._ids(app_id)
        for endpoint_id in ids:
            await self.kv.purge(f"{app_id}.{endpoint_id}")
        return len(ids)
