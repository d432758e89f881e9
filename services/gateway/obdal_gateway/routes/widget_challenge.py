"""``GET /v1/widget/challenge``: a proof-of-work challenge for a key that asks for one.

The widget fetches one before each question (ahead of time, while the visitor types) and sends
its solution as ``altcha`` with ``POST /v1/chat`` (:mod:`obdal_gateway.proof_of_work`).
"""

from __future__ import annotations

from typing import Any

from litestar import get

from obdal_gateway.auth import Principal, principal_limited_as
from obdal_gateway.state import Gateway

__all__ = ["widget_challenge"]


@get(
    "/v1/widget/challenge",
    summary="A proof-of-work challenge to solve before a question (keys with proof_of_work)",
    opt={"scope": "chat"},
    dependencies={"principal": principal_limited_as("widget-challenge")},
    cache_control=None,
)
async def widget_challenge(gw: Gateway, principal: Principal) -> dict[str, Any]:
    """``{"required": true, "challenge": {...}}`` (ALTCHA v2: find the counter whose PBKDF2 key
    starts with ``keyPrefix``), or ``{"required": false}`` for a key that asks for none."""
    if not principal.key.proof_of_work:
        return {"required": False}
    return {"required": True, "challenge": await gw.pow.challenge(principal.key_id)}
