"""An app's conversations: the list with filters and paging, one thread, export and erasure,
and a person's side of a handoff (docs/handoff.md).

Reads ``GET /v1/sessions`` and ``GET /v1/sessions/{id}``; the export is a plain link to
``GET /v1/sessions/export`` naming the app in its query (a download cannot send the
``Obdal-App`` header); deleting a conversation or erasing an end user is the browser's own call
to ``DELETE /v1/sessions/{id}`` or ``DELETE /v1/users/{user}``, which only owners may make.
A conversation handed to a person shows its handoff (status, reason, the customer's contact);
replying (``POST /v1/sessions/{id}/messages``, role ``agent``) and "Mark resolved"
(``POST …/handoff/resolve``) are the browser's calls too, so the API's role check is the only one.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote, urlencode

from litestar import Request, get
from litestar.response import Template

from obdal_gateway.console.api_client import console_api
from obdal_gateway.console.render import page, page_context

__all__ = ["CONVERSATION_PAGES"]

_PAGE_SIZE: Final = 25


@get("/apps/{app_id:str}/conversations", include_in_schema=False)
async def conversations_page(
    request: Request[Any, Any, Any],
    app_id: str,
    start_date: str | None = None,
    end_date: str | None = None,
    user: str | None = None,
    cursor: str | None = None,
) -> Template:
    ctx = await page_context(request, app_id=app_id)
    filters = {k: v for k, v in {"start_date": start_date, "end_date": end_date, "user": user}.items() if v}
    listed = await console_api(request).get(
        request, "/v1/sessions", app_id=ctx.app_id, params={**filters, "limit": _PAGE_SIZE, "cursor": cursor}
    )
    next_cursor = listed["next_cursor"]
    return page(
        "conversations.html",
        ctx,
        active="conversations",
        title="Conversations",
        sessions=listed["sessions"],
        filters={"start_date": start_date or "", "end_date": end_date or "", "user": user or ""},
        filtered=bool(filters),
        paged=cursor is not None,
        first_url="?" + urlencode(filters),
        next_url="?" + urlencode({**filters, "cursor": next_cursor}) if next_cursor else None,
        export_url="/v1/sessions/export?" + urlencode({"app_id": ctx.app_id, **filters}),
    )


@get("/apps/{app_id:str}/conversations/{session_id:str}", include_in_schema=False)
async def conversation_page(request: Request[Any, Any, Any], app_id: str, session_id: str) -> Template:
    ctx = await page_context(request, app_id=app_id)
    session_path = f"/v1/sessions/{quote(session_id, safe='')}"
    session = await console_api(request).get(request, session_path, app_id=ctx.app_id)
    user = session.get("user")
    contact = (session.get("handoff") or {}).get("contact") or {}
    email = contact.get("email")
    return page(
        "conversation.html",
        ctx,
        active="conversations",
        title="Conversation",
        session=session,
        session_path=session_path,
        # A path segment for the browser's call: an end user's id may hold any character.
        user_path=f"/v1/users/{quote(user, safe='')}" if user else None,
        # Percent-encoded, so an address the customer typed cannot add a subject or recipients.
        mailto=f"mailto:{quote(email, safe='@+')}" if email else None,
        # What a reply is signed with unless the operator changes it (the API takes 80 characters).
        reply_name=(ctx.me["operator"].get("name") or ctx.me["operator"]["email"])[:80],
    )


CONVERSATION_PAGES = [conversations_page, conversation_page]
