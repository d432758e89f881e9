"""One delivery attempt: signed in the Standard Webhooks format, posted under the outbound policy.

Each attempt is signed afresh with its own ``webhook-timestamp`` (receivers refuse old ones, which
is what stops a captured request being replayed later), under the same ``webhook-id``. While a
secret is being rotated out, ``webhook-signature`` carries one signature per secret, which every
Standard Webhooks library accepts.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from obdal_common.outbound import OutboundClient, OutboundRefused
from obdal_common.schemas import DeliveryAttempt, WebhookEndpoint
from obdal_webhooks.endpoints import signing_secrets

__all__ = ["Sender", "signed_headers"]

# What is kept of an error or an unexpected answer in the delivery log.
_ERROR_CHARS = 300


def signed_headers(endpoint: WebhookEndpoint, *, msg_id: str, payload: str, at: datetime) -> dict[str, str]:
    signatures = [Webhook(secret).sign(msg_id, at, payload) for secret in signing_secrets(endpoint, at)]
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(signatures),
        "content-type": "application/json",
    }


class Sender:
    def __init__(self, client: OutboundClient, *, max_response_bytes: int) -> None:
        self._client = client
        self._max_response_bytes = max_response_bytes

    async def send(self, endpoint: WebhookEndpoint, *, msg_id: str, payload: str) -> DeliveryAttempt:
        """Post once; any outcome is an attempt (never raises for the receiver's sake)."""
        at = datetime.now(UTC)
        started = time.perf_counter()
        headers = signed_headers(endpoint, msg_id=msg_id, payload=payload, at=at)
        try:
            answer = await self._client.post(
                endpoint.url, content=payload.encode(), headers=headers, max_bytes=self._max_response_bytes
            )
        except OutboundRefused as refused:
            return DeliveryAttempt(
                at=at, latency_ms=_ms(started), error=f"{refused.code}: {refused.message}"[:_ERROR_CHARS]
            )
        error = None
        if not 200 <= answer.status < 300:
            said = answer.body[:120].decode("utf-8", "replace").strip()
            error = f"the receiver answered {answer.status}" + (f": {said}" if said else "")
            if 300 <= answer.status < 400:
                error += " (redirects are not followed)"
        return DeliveryAttempt(at=at, latency_ms=_ms(started), status_code=answer.status, error=error)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
