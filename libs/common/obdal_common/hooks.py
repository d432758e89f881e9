"""Publishing what an app's webhooks may hear of (``docs/webhooks.md``).

Each event is published once, by the service that saw it happen, onto the ``OBDAL_HOOKS``
stream; the webhooks service fans it out to the app's endpoints and delivers it durably. A
publisher never waits on a receiver, and an event that cannot be published is logged, never
fails what the user asked for (like the audit log).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from nats.js import JetStreamContext

from obdal_common import subjects
from obdal_common.errors import DependencyUnavailable
from obdal_common.ids import new_id
from obdal_common.messaging import publish_event
from obdal_common.schemas import HookEvent, HookEventType

__all__ = ["budget_reached", "publish_hook"]

log = logging.getLogger(__name__)


def budget_reached(*, key_id: str, token_budget: int, tokens_used: int) -> tuple[dict[str, Any], str]:
    """The ``budget.reached`` event's data and id. The gateway (refusing a key that used its day)
    and the chat worker (refusing an answer the rest cannot hold) both report it, under one id a
    day per key, so receivers hear of it once."""
    day = datetime.now(UTC).date().isoformat()
    data = {"key_id": key_id, "token_budget": token_budget, "tokens_used": tokens_used, "day": day}
    return data, f"budget.{key_id}.{day}"


async def publish_hook(
    js: JetStreamContext,
    event_type: HookEventType,
    *,
    app_id: str,
    data: dict[str, Any],
    event_id: str | None = None,
    give_up_after: float = 10.0,
) -> bool:
    """Publish one event; ``event_id`` (a fresh ``evt_`` id by default) makes a retried publish, or
    two services reporting the same fact, one event. ``False`` if it was lost (and logged)."""
    event = HookEvent(
        event_id=event_id or new_id("evt"),
        type=event_type,
        app_id=app_id,
        occurred_at=datetime.now(UTC),
        data=data,
    )
    try:
        await publish_event(
            js, subjects.hook_subject(event_type), event, msg_id=event.event_id, give_up_after=give_up_after
        )
    except DependencyUnavailable as exc:
        log.error("%s event %s of %s lost: %s", event_type, event.event_id, app_id, exc.message)
        return False
    return True
