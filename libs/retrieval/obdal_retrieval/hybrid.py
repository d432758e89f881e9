"""The index as chat and ingest use it: text in, ranked passages out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from obdal_common.schemas import DependencyStatus
from obdal_retrieval.backend import IndexBackend
from obdal_retrieval.chunks import Chunk, Hit, IndexPoint
from obdal_retrieval.embedders import Embedder
from obdal_retrieval.sparse import Bm25Encoder

__all__ = ["HybridIndex", "SearchMode"]

SearchMode = Literal["hybrid", "dense", "sparse"]

# Equal fused scores are common (RRF gives ranks 1 and 3 the same score as 3 and 1) and the
# engines order them differently from one call to the next. A few more hits than asked for, with
# ties broken by passage, make the same question get the same passages every time.
_TIE_MARGIN = 10


def _ranking(hit: Hit) -> tuple[float, str, int, str]:
    return (-hit.score, hit.file_id, hit.position, hit.text)


class HybridIndex:
    """Dense + BM25 hybrid retrieval over an :class:`IndexBackend`, one app at a time."""

    def __init__(
        self,
        backend: IndexBackend,
        embedder: Embedder,
        *,
        batch_size: int = 64,
        prefetch: int = 200,
        mode: SearchMode = "hybrid",
    ) -> None:
        self.backend = backend
        self.embedder = embedder
        self._sparse = Bm25Encoder()
        self._batch_size = batch_size
        self._prefetch = prefetch
        self.mode = mode

    async def add(self, chunks: Sequence[Chunk]) -> int:
        """Embed and index chunks in batches; returns how many were indexed."""
        for start in range(0, len(chunks), self._batch_size):
            batch = chunks[start : start + self._batch_size]
            texts = [c.indexed_text for c in batch]
            dense = await self.embedder.embed(texts)
            sparse = self._sparse.documents(texts)
            await self.backend.upsert(
                [IndexPoint(chunk=c, dense=d, sparse=s) for c, d, s in zip(batch, dense, sparse, strict=True)]
            )
        return len(chunks)

    async def search(
        self,
        app_id: str,
        query: str,
        *,
        limit: int = 5,
        mode: SearchMode | None = None,
        dense: list[float] | None = None,
    ) -> list[Hit]:
        """The app's passages best matching ``query`` (never another app's).

        ``mode`` overrides the index's configured mode (bench/retrieval.py measures each).
        ``dense`` is ``query``'s vector by this index's embedder when the caller has it already
        (chat embeds a question once, for curated answers and retrieval).
        """
        if not query.strip():
            return []
        mode = mode or self.mode
        # Embedded in every mode: the dense similarity is each hit's relevance, even when BM25 alone ranks.
        if dense is None:
            dense = (await self.embedder.embed([query]))[0]
        sparse = self._sparse.query(query) if mode != "dense" else None
        wanted = limit + _TIE_MARGIN
        found = await self.backend.search(
            app_id,
            dense=dense if mode != "sparse" else None,
            sparse=sparse,
            limit=wanted,
            prefetch=max(self._prefetch, wanted),
            relevance_to=dense,
        )
        return sorted(found, key=_ranking)[:limit]

    async def status(self) -> DependencyStatus:
        """Health of the index, for a service's status report."""
        try:
            return DependencyStatus(ok=True, detail=await self.backend.health())
        except Exception as exc:  # any backend failure means "not ready", with its reason
            return DependencyStatus(ok=False, detail=f"{type(exc).__name__}: {exc}")

    async def delete_file(self, app_id: str, file_id: str, *, except_version: int | None = None) -> int:
        """Remove every passage of one file of one app (but those of ``except_version``)."""
        return await self.backend.delete_file(app_id, file_id, except_version=except_version)

    async def delete_app(self, app_id: str) -> int:
        """Remove every passage of an app."""
        return await self.backend.delete_app(app_id)
