"""Each app's index generation: a number that changes whenever the app's indexed passages do.

Ingest bumps it after every write or delete of an app's passages, before it reports the file
ready or deleted; chat reads it before searching and keeps it with what it caches, so a cached
search is served only while the generation is still the one it was read under
(:mod:`obdal_chat.query_cache`). The generation is the revision of the app's entry in a NATS KV
bucket (``subjects.KV_INDEX_GENERATIONS``): every put gets a new, higher revision, so a bump needs
no read, no compare-and-set, and two ingest replicas bumping at once both change it. Read with a
plain get, not a watched mirror nor a direct get: the stream's leader answers it, so it sees every
bump acknowledged before it (a file reported ready is never answered from the index as it was
before), which neither a watch, pushed to each reader after the put, nor a direct get, which a
clustered bucket's lagging replica may answer, promises. Measured (bench/query_cache.py): a get
0.34 ms, a direct get 0.22 ms, a put 0.24 ms, a watch seeing a put 0.33 ms p50 and up to 3 ms
p99. The entry is never deleted: a deleted app's generation keeps moving up, so no cached
result of an earlier generation can match it again.
"""

from __future__ import annotations

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

__all__ = ["IndexGenerations"]


class IndexGenerations:
    """The index generations of every app, in one KV bucket keyed by app id."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def bump(self, app_id: str) -> int:
        """Record that the app's passages changed; its new generation."""
        return await self._kv.put(app_id, b"")

    async def current(self, app_id: str) -> int:
        """The app's generation now (0 for an app whose passages never changed)."""
        try:
            entry = await self._kv.get(app_id)
        except KeyNotFoundError:
            return 0
        return entry.revision or 0
