"""Opening the index named by the settings, once per process."""

from __future__ import annotations

import asyncio
import re

from obdal_common.settings import ObdalSettings
from obdal_retrieval.backend import IndexBackend
from obdal_retrieval.embedders import HashingEmbedder, make_embedder
from obdal_retrieval.hybrid import HybridIndex, SearchMode
from obdal_retrieval.minilm import MiniLMEmbedder

__all__ = ["close_index", "close_indexes", "open_index"]

# The embedded index is owned by one process: chat and ingest running together
# (obdal up) must share the one shard rather than each opening it. Each index counts
# its holders, so the first service to stop does not close it under the other.
_open: dict[tuple[str, str], HybridIndex] = {}
_holders: dict[tuple[str, str], int] = {}
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
            _holders[cache_key] += 1
            return _open[cache_key]
        embedder = make_embedder(
            settings.embed_model, model_cache_dir=settings.model_cache_dir, runners=settings.embed_runners
        )
        if isinstance(embedder, MiniLMEmbedder):
            await embedder.load()  # fail at start if the extra is missing, not at the first request
        dim = await embedder.dimension()
        backend: IndexBackend
        if settings.qdrant_url:
            from obdal_retrieval.qdrant_server import QdrantServerBackend

            backend = await QdrantServerBackend.open(
                settings.qdrant_url,
                collection=f"obdal_chunks_{_slug(embedder.model_id)}",
                dim=dim,
                api_key=settings.qdrant_api_key,
                shard_number=settings.qdrant_shard_number,
                replication_factor=settings.qdrant_replication_factor,
                write_consistency_factor=settings.qdrant_write_consistency_factor,
            )
        else:
            from obdal_retrieval.edge import EdgeBackend

            backend = EdgeBackend(
                settings.index_dir / _slug(embedder.model_id),
                dim=dim,
                compact_after_s=settings.index_compact_after_s,
            )
        mode: SearchMode
        if settings.retrieval_mode != "auto":
            mode = settings.retrieval_mode
        else:
            # On SciFact the hashing embedder drags hybrid below BM25 alone (docs/retrieval.md).
            mode = "sparse" if isinstance(embedder, HashingEmbedder) else "hybrid"
        index = HybridIndex(backend, embedder, batch_size=settings.embed_batch_size, mode=mode)
        _open[cache_key] = index
        _holders[cache_key] = 1
        return index


async def close_index(index: HybridIndex) -> None:
    """Give back an index :func:`open_index` returned; the last holder's call closes it.

    A service's ``serve`` calls it on the way out. An index already closed (by
    :func:`close_indexes`) is left alone.
    """
    async with _lock:
        key = next((k for k, held in _open.items() if held is index), None)
        if key is None:
            return
        _holders[key] -= 1
        if _holders[key] == 0:
            del _open[key], _holders[key]
            await index.backend.close()


async def close_indexes() -> None:
    """Close every index this process opened, whoever still holds it (at shutdown, in tests)."""
    async with _lock:
        for index in _open.values():
            await index.backend.close()
        _open.clear()
        _holders.clear()
