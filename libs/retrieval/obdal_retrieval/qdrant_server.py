"""Production backend: a Qdrant server (or cluster) through ``qdrant-client``.

``OBDAL_QDRANT_URL=:memory:`` runs the same client code in qdrant-client's local
mode, which is how the tests exercise this path without a server.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from obdal_common.errors import DependencyUnavailable
from obdal_retrieval.backend import DENSE, RRF_K, SPARSE, hit_from_payload, payload_of
from obdal_retrieval.chunks import Hit, IndexPoint, SparseVector, point_id

__all__ = ["QdrantServerBackend", "collection_spec"]


def collection_spec(
    dim: int,
    *,
    shard_number: int | None = None,
    replication_factor: int = 1,
    write_consistency_factor: int = 1,
) -> models.CreateCollection:
    """The collection Obdal asks Qdrant for: named dense and BM25 vectors, and its shard layout.

    ``shard_number`` None leaves the count to the server (one shard per node at creation).
    """
    return models.CreateCollection(
        vectors={DENSE: models.VectorParams(size=dim, distance=models.Distance.COSINE)},
        sparse_vectors={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
        shard_number=shard_number,
        replication_factor=replication_factor,
        write_consistency_factor=write_consistency_factor,
    )


def _app_filter(app_id: str, file_id: str | None = None, except_version: int | None = None) -> models.Filter:
    must: list[models.Condition] = [
        models.FieldCondition(key="app_id", match=models.MatchValue(value=app_id))
    ]
    if file_id is not None:
        must.append(models.FieldCondition(key="file_id", match=models.MatchValue(value=file_id)))
    if except_version is None:
        return models.Filter(must=must)
    keep: list[models.Condition] = [
        models.FieldCondition(key="version", match=models.MatchValue(value=except_version))
    ]
    return models.Filter(must=must, must_not=keep)


class QdrantServerBackend:
    """One collection per embedding model, partitioned by an ``app_id`` tenant index."""

    def __init__(self, client: AsyncQdrantClient, collection: str) -> None:
        self._client = client
        self._collection = collection

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        collection: str,
        dim: int,
        api_key: str | None = None,
        shard_number: int | None = None,
        replication_factor: int = 1,
        write_consistency_factor: int = 1,
    ) -> QdrantServerBackend:
        """Connect and create the collection and its payload indexes if missing.

        The shard layout is given only to a new collection: an existing one keeps its own
        (Qdrant changes it through its collection and cluster API, docs/scaling.md).
        """
        if url == ":memory:":
            client = AsyncQdrantClient(location=":memory:")
        elif url.startswith("path:"):
            client = AsyncQdrantClient(path=url.removeprefix("path:"))
        else:
            client = AsyncQdrantClient(url=url, api_key=api_key)
        try:
            if not await client.collection_exists(collection):
                spec = collection_spec(
                    dim,
                    shard_number=shard_number,
                    replication_factor=replication_factor,
                    write_consistency_factor=write_consistency_factor,
                )
                await client.create_collection(
                    collection,
                    vectors_config=spec.vectors,
                    sparse_vectors_config=spec.sparse_vectors,
                    shard_number=spec.shard_number,
                    replication_factor=spec.replication_factor,
                    write_consistency_factor=spec.write_consistency_factor,
                )
                await client.create_payload_index(
                    collection,
                    "app_id",
                    field_schema=models.KeywordIndexParams(
                        type=models.KeywordIndexType.KEYWORD, is_tenant=True
                    ),
                )
                await client.create_payload_index(
                    collection, "file_id", field_schema=models.PayloadSchemaType.KEYWORD
                )
        except (ResponseHandlingException, UnexpectedResponse) as exc:
            raise DependencyUnavailable(f"Qdrant at {url}: {exc}", code="index_unavailable") from exc
        return cls(client, collection)

    async def upsert(self, points: Sequence[IndexPoint]) -> None:
        await self._client.upsert(
            self._collection,
            points=[
                models.PointStruct(
                    id=point_id(p.chunk.app_id, p.chunk.file_id, p.chunk.position, version=p.chunk.version),
                    vector={
                        DENSE: p.dense,
                        SPARSE: models.SparseVector(indices=p.sparse[0], values=p.sparse[1]),
                    },
                    payload=payload_of(p.chunk),
                )
                for p in points
            ],
            wait=True,
        )

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
        flt = _app_filter(app_id)
        with_vectors = [DENSE] if relevance_to else False
        queries: list[tuple[Any, str]] = []
        if dense is not None:
            queries.append((dense, DENSE))
        if sparse is not None:
            queries.append((models.SparseVector(indices=sparse[0], values=sparse[1]), SPARSE))
        if len(queries) == 1:
            result = await self._client.query_points(
                self._collection,
                query=queries[0][0],
                using=queries[0][1],
                query_filter=flt,
                limit=limit,
                with_payload=True,
                with_vectors=with_vectors,
            )
        else:
            result = await self._client.query_points(
                self._collection,
                prefetch=[
                    models.Prefetch(query=q, using=name, limit=prefetch, filter=flt) for q, name in queries
                ],
                query=models.RrfQuery(rrf=models.Rrf(k=RRF_K)),
                query_filter=flt,
                limit=limit,
                with_payload=True,
                with_vectors=with_vectors,
            )
        return [
            hit_from_payload(
                p.payload or {},
                p.score,
                vector=p.vector.get(DENSE) if relevance_to and isinstance(p.vector, dict) else None,  # type: ignore[arg-type]
                to=relevance_to,
            )
            for p in result.points
        ]

    async def count(self, app_id: str, file_id: str | None = None) -> int:
        result = await self._client.count(
            self._collection, count_filter=_app_filter(app_id, file_id), exact=True
        )
        return result.count

    async def _delete(self, flt: models.Filter) -> int:
        found = (await self._client.count(self._collection, count_filter=flt, exact=True)).count
        await self._client.delete(
            self._collection, points_selector=models.FilterSelector(filter=flt), wait=True
        )
        return found

    async def delete_file(self, app_id: str, file_id: str, *, except_version: int | None = None) -> int:
        return await self._delete(_app_filter(app_id, file_id, except_version))

    async def delete_app(self, app_id: str) -> int:
        return await self._delete(_app_filter(app_id))

    async def health(self) -> str:
        try:
            info = await self._client.get_collection(self._collection)
        except (ResponseHandlingException, UnexpectedResponse) as exc:
            raise DependencyUnavailable(f"Qdrant: {exc}", code="index_unavailable") from exc
        return f"qdrant collection {self._collection}, {info.points_count} points"

    async def close(self) -> None:
        await self._client.close()
