"""When sources sync: every ingest worker looks, every ``OBDAL_SOURCE_TICK_S``, for sources that
are due, and claims each by compare-and-set on its record before syncing it.

Due: queued (just created, or a sync asked for), or past its ``next_sync_at``, or ``syncing``
under a lease that ran out (its worker died or was cut off: the sync starts over, pages already
done cost a conditional request each). The schedule is in the records, not in a process, so it
survives restarts; the claim is one KV update at the revision read, so of several replicas
exactly one wins and the others see the record changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta

import msgspec

from obdal_common.schemas import WebsiteSource
from obdal_ingest.sources import SourceStore
from obdal_ingest.syncs import SourceSync

__all__ = ["SourceScheduler", "is_due"]

log = logging.getLogger(__name__)


def is_due(source: WebsiteSource, *, now: datetime) -> bool:
    if source.status == "queued":
        return True
    if source.status == "syncing":
        return source.lease_until is None or source.lease_until <= now
    return source.next_sync_at is not None and source.next_sync_at <= now


class SourceScheduler:
    def __init__(
        self,
        store: SourceStore,
        sync: SourceSync,
        *,
        worker_id: str,
        tick_s: float,
        lease_s: float,
        concurrency: int,
    ) -> None:
        self._store = store
        self._sync = sync
        self._worker_id = worker_id
        self._tick_s = tick_s
        self._lease_s = lease_s
        self._slots = concurrency
        self._running: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Look for due sources until ``stop``; syncs in flight are cancelled then (their lease
        runs out and another worker takes them over)."""
        try:
            while not stop.is_set():
                try:
                    await self.tick()
                except Exception:
                    log.exception("looking for due website syncs failed; trying again")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._tick_s)
        finally:
            for task in list(self._running):
                task.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)

    async def tick(self) -> int:
        """Claim and start every due source this worker has room for; how many it started."""
        started = 0
        now = self._store.now()
        due = [(s, r) for s, r in await self._store.every_source() if is_due(s, now=now)]
        # The longest waiting first, so a busy worker starves no source.
        due.sort(key=lambda entry: entry[0].updated_at)
        for source, revision in due:
            if len(self._running) >= self._slots:
                break
            claimed = msgspec.structs.replace(
                source,
                status="syncing",
                lease_owner=self._worker_id,
                lease_until=now + timedelta(seconds=self._lease_s),
                last_sync_started_at=now,
                progress=None,
                updated_at=now,
            )
            if await self._store.swap(claimed, revision) is None:
                continue  # another worker claimed it, or the API changed it: next tick decides
            task = asyncio.create_task(self._one(claimed), name=f"sync {source.source_id}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            started += 1
        return started

    async def _one(self, source: WebsiteSource) -> None:
        try:
            await self._sync.run(source)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("sync of source %s failed", source.source_id)
            await self._sync.fail(
                source, f"the sync stopped on an internal error ({type(exc).__name__}); retry it"
            )
