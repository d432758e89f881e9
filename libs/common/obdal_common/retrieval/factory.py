"""Opening the index named by the settings, once per process."""

from __future__ import annotations

import asyncio
import re

from obdal_common.retrieval.backend import IndexBackend
from obdal_common.retrieval.embedders import HashingEmbedder, make_embedder
from obdal_common.retrieval.hybrid import HybridIndex, SearchMode
from obdal_common.retrieval.minilm import MiniLMEmbedder
from obdal_common.settings import ObdalSettings

__all__ = ["close_indexes", "open_index"]

# The embedded index is owned by one process: chat and ingest running together
# (obdal up) must share the one shard rather than each opening it.
_open: dict[tuple[str, str], HybridIndex] = {}
_lock = asyncio.Lock()


def _slug(model_id: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", model_id.lower()).strip("_")


async def open_index(settings: ObdalSettings) -> HybridIndex:
    """The hybrid index for these settings: Qdrant Edge by default, a server if configured.

    Vectors of different embedding models never mix: each model has its own
    shard (embedded) or collection (server).
    """
    location = settings.qdrant_url or str(settings.index_dir)
    cache_key = (location, settings.embed_model)
    async with _lock:
        if cache_key in _open:
            return _open[cache_key]
        embedder = make_embedder(settings.embed_model, model_cache_dir=settings.model_cache_dir)
        if isinstance(embedder, MiniLMEmbedder):
            await embedder.load()  # fail at start if the extra is missing, not at the first request
        dim = await embedder.dimension()
        backend: IndexBackend
        if settings.qdrant_url:
            from obdal_common.retrieval.qdrant_server import QdrantServerBackend

            backend = await QdrantServerBackend.open(
                settings.qdrant_url,
                collection=f"obdal_chunks_{_slug(embedder.model_id)}",
                dim=dim,
                api_key=settings.qdrant_api_key,
            )
        else:
            from obdal_common.retrieval.edge import EdgeBackend

            backend = EdgeBackend(settings.index_dir / _slug(embedder.model_id), dim=dim)
        mode: SearchMode
        if settings.retrieval_mode != "auto":
            mode = settings.retrieval_mode
        else:
            # On SciFact the hashing embedder drags hybrid below BM25 alone (docs/retrieval.md).
            mode = "sparse" if isinstance(embedder, HashingEmbedder) else "hybrid"
        index = HybridIndex(backend, embedder, batch_size=settings.embed_batch_size, mode=mode)
        _open[cache_key] = index
        return index


async def close_indexes() -> None:
    """Close every index this process opened (at shutdown)."""
    async with _lock:
        for index in _open.values():
            await index.backend.close()
        _open.clear()
