"""The index as ingest writes it: every write or delete of an app's passages bumps the app's
index generation (:class:`obdal_retrieval.generations.IndexGenerations`) once it is done.

Chat caches searches under the generation it read before searching; a bump after each change,
before ingest reports the file ready or deleted, is what keeps a cached search from outliving
the passages it found. One KV put, 0.24 ms (bench/query_cache.py), per batch of chunks
embedded (tens of ms and more) or per delete: nothing next to the writes themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

from obdal_retrieval import Chunk, HybridIndex
from obdal_retrieval.generations import IndexGenerations

__all__ = ["IndexWriter"]


class IndexWriter:
    """:class:`HybridIndex`'s writes and deletes, each followed by its app's generation bump."""

    def __init__(self, index: HybridIndex, *, generations: IndexGenerations) -> None:
        self._index = index
        self._generations = generations

    async def add(self, chunks: Sequence[Chunk]) -> int:
        """Embed and index ``chunks``; returns how many were indexed."""
        added = await self._index.add(chunks)
        for app_id in sorted({chunk.app_id for chunk in chunks}):
            await self._generations.bump(app_id)
        return added

    async def delete_file(self, app_id: str, file_id: str, *, except_version: int | None = None) -> int:
        """Remove every passage of one file of one app (but those of ``except_version``)."""
        removed = await self._index.delete_file(app_id, file_id, except_version=except_version)
        await self._generations.bump(app_id)
        return removed

    async def delete_app(self, app_id: str) -> int:
        """Remove every passage of an app."""
        removed = await self._index.delete_app(app_id)
        await self._generations.bump(app_id)
        return removed
