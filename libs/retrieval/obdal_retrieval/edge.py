"""Embedded backend: Qdrant Edge, the Qdrant engine inside this process.

Deleted passages leave the disk. Qdrant marks a deleted point in its segment and keeps the
payload (the passage text) in ``payload_storage/page_*.dat``; its write-ahead log keeps every
upsert in ``wal/open-*`` until a 32 MB segment of later writes pushes it out. Measured on
qdrant-edge 0.9: a marker was in both files after a delete, a flush and an ``optimize()`` with
the default optimizer thresholds (vacuum only past 20 % deleted and 1000 points). So the shard
runs without a WAL (every write is flushed instead, ~5 ms, which is what makes it durable), and
with vacuum thresholds that make ``optimize()`` rewrite any segment holding a deleted point;
``compact_after_s`` after a deletion (deletions in the meantime share the run), the backend
optimizes, and the old segment files are removed. A rewrite rebuilds the segment's HNSW graph:
0.2 s for 2,000 small passages, 11-21 s for 20,000 passages of 384 dimensions on 2 cores, during
which writes wait (reads do not). So it is debounced (default 5 min) rather than run per
deletion. Edge cannot switch the WAL off in an existing shard, so a shard created with one is
rebuilt once, at start, by copying its points into a new shard (2.5 s for 20,000 passages).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

import qdrant_edge as qe

from obdal_retrieval.backend import DENSE, RRF_K, SPARSE, hit_from_payload, payload_of
from obdal_retrieval.chunks import Hit, IndexPoint, SparseVector, point_id

__all__ = ["EdgeBackend"]

log = logging.getLogger(__name__)


def _app_filter(app_id: str, file_id: str | None = None, except_version: int | None = None) -> qe.Filter:
    must: list[qe.FieldCondition] = [qe.FieldCondition("app_id", match=qe.MatchValue(app_id))]
    if file_id is not None:
        must.append(qe.FieldCondition("file_id", match=qe.MatchValue(file_id)))
    if except_version is None:
        return qe.Filter(must=list(must))
    keep = [qe.FieldCondition("version", match=qe.MatchValue(except_version))]
    return qe.Filter(must=list(must), must_not=list(keep))


def _config(dim: int) -> qe.EdgeConfig:
    return qe.EdgeConfig(
        vectors={DENSE: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)},
        sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        wal_enabled=False,
        # Any deleted point makes its segment due for a rewrite (the payload goes with it).
        optimizers=qe.EdgeOptimizersConfig(deleted_threshold=1e-9, vacuum_min_vector_number=1),
    )


def _create(path: Path, config: qe.EdgeConfig) -> qe.EdgeShard:
    path.mkdir(parents=True, exist_ok=True)
    shard = qe.EdgeShard.create(str(path), config)
    shard.update(qe.UpdateOperation.create_field_index("app_id", qe.KeywordIndexParams(is_tenant=True)))
    shard.update(qe.UpdateOperation.create_field_index("file_id", qe.PayloadSchemaType.Keyword))
    return shard


def _rebuild_without_wal(path: Path, config: qe.EdgeConfig) -> None:
    """Copy a shard that has a WAL into one without, then put it in its place.

    Built in ``<name>.rebuild``, renamed ``<name>.rebuilt`` once complete, then swapped in:
    an interruption at any step is finished or started again by the next start.
    """
    building, built = path.with_name(f"{path.name}.rebuild"), path.with_name(f"{path.name}.rebuilt")
    shutil.rmtree(building, ignore_errors=True)
    if not built.exists():
        old, new = qe.EdgeShard.load(str(path)), _create(building, config)
        offset = None
        while True:
            records, offset = old.scroll(
                qe.ScrollRequest(offset=offset, limit=512, with_payload=True, with_vector=True)
            )
            if records:
                # ``vector`` is typed optional; with_vector=True always sets it.
                points = [qe.Point(r.id, r.vector, r.payload) for r in records if r.vector is not None]
                new.update(qe.UpdateOperation.upsert_points(points))
            if offset is None:
                break
        new.flush()
        new.close()
        old.close()
        building.rename(built)
    shutil.rmtree(path)
    built.rename(path)


def _has_wal(path: Path) -> bool:
    stored = json.loads((path / "edge_config.json").read_text())
    return stored.get("wal_enabled", True) is not False


class EdgeBackend:
    """A Qdrant Edge shard on local disk. One process owns a shard directory."""

    def __init__(self, path: Path, *, dim: int, compact_after_s: float) -> None:
        self._path = path
        self._compact_after_s = compact_after_s
        self._deleted = False  # a deletion not compacted yet
        self._compaction: asyncio.Task[None] | None = None
        # Edge calls block; writes are serialised, reads run in worker threads.
        self._write_lock = threading.Lock()
        config = _config(dim)
        if path.with_name(f"{path.name}.rebuilt").exists() or (
            (path / "edge_config.json").exists() and _has_wal(path)
        ):
            _rebuild_without_wal(path, config)
        if (path / "edge_config.json").exists():
            self._shard = qe.EdgeShard.load(str(path), config)
        else:
            self._shard = _create(path, config)

    def _upsert(self, points: Sequence[IndexPoint]) -> None:
        edge_points = [
            qe.Point(
                point_id(p.chunk.app_id, p.chunk.file_id, p.chunk.position, version=p.chunk.version),
                {DENSE: p.dense, SPARSE: qe.SparseVector(p.sparse[0], p.sparse[1])},
                payload_of(p.chunk),
            )
            for p in points
        ]
        with self._write_lock:
            self._shard.update(qe.UpdateOperation.upsert_points(edge_points))
            self._shard.flush()  # no WAL: this is what makes the write durable

    async def upsert(self, points: Sequence[IndexPoint]) -> None:
        await asyncio.to_thread(self._upsert, points)

    def _search(
        self,
        app_id: str,
        dense: list[float] | None,
        sparse: SparseVector | None,
        limit: int,
        prefetch: int,
        relevance_to: list[float] | None,
    ) -> list[Hit]:
        flt = _app_filter(app_id)
        with_vector = [DENSE] if relevance_to else False
        queries = []
        if dense is not None:
            queries.append(qe.Query.Nearest(dense, using=DENSE))
        if sparse is not None:
            queries.append(qe.Query.Nearest(qe.SparseVector(sparse[0], sparse[1]), using=SPARSE))
        if len(queries) == 1:
            request = qe.QueryRequest(
                limit=limit, query=queries[0], filter=flt, with_payload=True, with_vector=with_vector
            )
        else:
            request = qe.QueryRequest(
                limit=limit,
                prefetches=[qe.Prefetch(limit=prefetch, query=q, filter=flt) for q in queries],
                query=qe.Fusion.Rrf(k=RRF_K),  # type: ignore[arg-type]  # stub omits the variants
                filter=flt,
                with_payload=True,
                with_vector=with_vector,
            )
        return [
            hit_from_payload(
                p.payload or {},
                p.score,
                vector=(p.vector or {}).get(DENSE) if relevance_to else None,  # type: ignore[union-attr, arg-type]
                to=relevance_to,
            )
            for p in self._shard.query(request)
        ]

    async def search(
        self,
        app_id: str,
        *,
        dense: list[float] | None,
        sparse: SparseVector | None,
        limit: int,
        prefetch: int,
        relevance_to: list[float] | None = None,
    ) -> list[Hit]:
        return await asyncio.to_thread(self._search, app_id, dense, sparse, limit, prefetch, relevance_to)

    async def count(self, app_id: str, file_id: str | None = None) -> int:
        return await asyncio.to_thread(
            self._shard.count, qe.CountRequest(filter=_app_filter(app_id, file_id), exact=True)
        )

    def _delete(self, flt: qe.Filter) -> int:
        with self._write_lock:
            found = self._shard.count(qe.CountRequest(filter=flt, exact=True))
            self._shard.update(qe.UpdateOperation.delete_points_by_filter(flt))
            self._shard.flush()
        return found

    async def _deleting(self, flt: qe.Filter) -> int:
        found = await asyncio.to_thread(self._delete, flt)
        self._deleted = True
        if self._compaction is None or self._compaction.done():
            self._compaction = asyncio.create_task(self._compact_soon())
        return found

    async def _compact_soon(self) -> None:
        """Rewrite the segments ``compact_after_s`` after a deletion, until none is left over:
        a deleted passage is off the disk within that delay plus two rewrites."""
        while self._deleted:
            await asyncio.sleep(self._compact_after_s)
            self._deleted = False
            try:
                await asyncio.to_thread(self._compact)
            except Exception:  # an Edge error: try again after the next delay
                log.exception("rewriting the index segments failed")
                self._deleted = True

    def _compact(self) -> None:
        with self._write_lock:
            self._shard.optimize()
            self._shard.flush()

    async def delete_file(self, app_id: str, file_id: str, *, except_version: int | None = None) -> int:
        return await self._deleting(_app_filter(app_id, file_id, except_version))

    async def delete_app(self, app_id: str) -> int:
        return await self._deleting(_app_filter(app_id))

    async def health(self) -> str:
        total = await asyncio.to_thread(self._shard.count, qe.CountRequest(exact=False))
        return f"qdrant-edge at {self._path}, ~{total} points"

    async def close(self) -> None:
        if self._compaction is not None:
            self._compaction.cancel()
        with self._write_lock:
            if self._deleted:  # due, and a restart must not make it wait longer
                self._shard.optimize()
            self._shard.flush()
            self._shard.close()
