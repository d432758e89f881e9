"""``POST /v1/widget/conversation``: a verified end user's latest conversation, for the widget.

The widget keeps its conversation in the browser's storage; a signed-in customer who opens the
site on another device gets it back here, proved by the hash the site's backend signed
(:mod:`obdal_gateway.identity`). A POST, so the hash never sits in a URL or an access log.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import post

from obdal_common.errors import NotFound
from obdal_common.schemas import SessionLookup, SessionQuery
from obdal_gateway.auth import Principal, principal_limited_as
from obdal_gateway.identity import end_user
from obdal_gateway.state import Gateway

__all__ = ["ConversationBody", "widget_conversation"]


class ConversationBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    user: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    user_hash: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


@post(
    "/v1/widget/conversation",
    status_code=200,
    summary="A verified end user's latest conversation (the widget resuming on another device)",
    opt={"scope": "chat"},
    dependencies={"principal": principal_limited_as("widget-conversation")},
    request_max_body_size=4096,
)
async def widget_conversation(gw: Gateway, principal: Principal, data: ConversationBody) -> dict[str, Any]:
    """``{"session_id", "last_at", "messages": [{"message_id", "role", "content", "timestamp"}],
    "handoff"}`` (a person's replies have ``role`` ``agent`` and their ``name``); 401
    ``invalid_user_hash``, 400 ``identity_verification_off``, 404 ``conversation_not_found``."""
    user = await end_user(gw, principal, data.user, data.user_hash)
    page = await gw.metering.sessions(SessionQuery(app_id=principal.app_id, user=user, limit=1))
    if not page.data:
        raise NotFound("this user has no conversation yet", code="conversation_not_found")
    detail = await gw.metering.session(
        SessionLookup(app_id=principal.app_id, session_id=page.data[0].session_id)
    )
    return {
        "session_id": detail.session_id,
        "last_at": detail.last_at.isoformat(),
        "messages": [
            {
                "message_id": m.message_id,
                "role": m.role,
                "content": m.content,
                "timestamp": m.timestamp.isoformat(),
                **({"name": m.name} if m.role == "agent" else {}),
            }
            for m in detail.messages
        ],
        # So the widget listens for a person's replies when the session waits for one.
        "handoff": None if detail.handoff is None else {"status": detail.handoff.status},
    }
