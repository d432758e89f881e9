"""Embedded backend: Qdrant Edge, the Qdrant engine inside this process."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import qdrant_edge as qe

from obdal_retrieval.backend import DENSE, RRF_K, SPARSE, hit_from_payload, payload_of
from obdal_retrieval.chunks import Hit, IndexPoint, SparseVector, point_id

__all__ = ["EdgeBackend"]


def _app_filter(app_id: str, file_id: str | None = None, except_version: int | None = None) -> qe.Filter:
    must: list[qe.FieldCondition] = [qe.FieldCondition("app_id", match=qe.MatchValue(app_id))]
    if file_id is not None:
        must.append(qe.FieldCondition("file_id", match=qe.MatchValue(file_id)))
    if except_version is None:
        return qe.Filter(must=list(must))
    keep = [qe.FieldCondition("version", match=qe.MatchValue(except_version))]
    return qe.Filter(must=list(must), must_not=list(keep))


class EdgeBackend:
    """A Qdrant Edge shard on local disk. One process owns a shard directory."""

    def __init__(self, path: Path, *, dim: int) -> None:
        self._path = path
        # Edge calls block; writes are serialised, reads run in worker threads.
        self._write_lock = threading.Lock()
        if (path / "edge_config.json").exists():
            self._shard = qe.EdgeShard.load(str(path))
        else:
            path.mkdir(parents=True, exist_ok=True)
            config = qe.EdgeConfig(
                vectors={DENSE: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)},
                sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            )
            self._shard = qe.EdgeShard.create(str(path), config)
            self._shard.update(
                qe.UpdateOperation.create_field_index("app_id", qe.KeywordIndexParams(is_tenant=True))
            )
            self._shard.update(qe.UpdateOperation.create_field_index("file_id", qe.PayloadSchemaType.Keyword))

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
        return found

    async def delete_file(self, app_id: str, file_id: str, *, except_version: int | None = None) -> int:
        return await asyncio.to_thread(self._delete, _app_filter(app_id, file_id, except_version))

    async def delete_app(self, app_id: str) -> int:
        return await asyncio.to_thread(self._delete, _app_filter(app_id))

    async def health(self) -> str:
        total = await asyncio.to_thread(self._shard.count, qe.CountRequest(exact=False))
        return f"qdrant-edge at {self._path}, ~{total} points"

    async def close(self) -> None:
        with self._write_lock:
            self._shard.flush()
            self._shard.close()
