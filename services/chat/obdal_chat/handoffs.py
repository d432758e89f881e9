"""Which sessions wait for a person: a watched mirror of metering's ``obdal_handoffs`` bucket.

The assistant stays quiet on those (docs/handoff.md). The bucket holds only open handoffs, so
the mirror stays small, and asking it costs no I/O per question.
"""

from __future__ import annotations

from nats.js.kv import KeyValue

from obdal_common import subjects
from obdal_common.kvmirror import KVMirror
from obdal_common.schemas import OpenHandoff

__all__ = ["OpenHandoffs"]


class OpenHandoffs:
    def __init__(self, kv: KeyValue) -> None:
        self._records = KVMirror(kv, OpenHandoff)

    async def start(self) -> None:
        await self._records.start()

    async def stop(self) -> None:
        await self._records.stop()

    def waiting(self, app_id: str, session_id: str) -> bool:
        """Whether the session is handed off to a person, as the watch last heard."""
        return self._records.cached(subjects.handoff_entry(app_id, session_id)) is not None
