"""How many event streams (``GET /v1/sessions/{id}/events``) one session may hold open on a gateway.

A session's stream holds a connection and a NATS subscription for up to 30 minutes, and a
publishable key's visitor can open one per request: the per-minute rate limit alone would let
one key hold thousands. A customer needs one per open tab, so a handful per session is enough;
counted per gateway replica, in memory (a stream lives and dies on the gateway that holds it).
"""

from __future__ import annotations

from collections import Counter

from obdal_common.errors import RateLimited

__all__ = ["SessionStreams"]


class SessionStreams:
    def __init__(self, *, per_session: int) -> None:
        self._per_session = per_session
        self._open: Counter[tuple[str, str]] = Counter()

    def take(self, app_id: str, session_id: str) -> None:
        """A place for one more stream of the session; 429 ``too_many_streams`` past the limit."""
        key = (app_id, session_id)
        if self._open[key] >= self._per_session:
            raise RateLimited(
                f"this conversation already has {self._per_session} open event streams; close one",
                code="too_many_streams",
                retry_after=5,
            )
        self._open[key] += 1

    def give_back(self, app_id: str, session_id: str) -> None:
        """The stream ended (once per :meth:`take`)."""
        key = (app_id, session_id)
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]
