"""The Qdrant collection is asked for with the configured shard layout.

qdrant-client's local mode, the only Qdrant runnable here, takes ``shard_number``,
``replication_factor`` and ``write_consistency_factor`` and drops them (it has no cluster, and
reports them back as None), and it reports no payload indexes either. So the layout is checked
in the request body Obdal builds (``collection_spec``, the ``CreateCollection`` qdrant-client
sends a server as JSON), and the creation path itself (settings -> ``open_index`` ->
``QdrantServerBackend.open``) runs against local mode with the layout given, creating the
collection that spec describes. Shards placed on nodes and the ``app_id`` tenant index need a
real Qdrant server (not available here).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from qdrant_client import AsyncQdrantClient

from obdal_common.settings import ObdalSettings
from obdal_retrieval import close_index, open_index
from obdal_retrieval.qdrant_server import collection_spec

COLLECTION = "obdal_chunks_obdal_hashing_384"


def test_the_request_body_carries_the_layout() -> None:
    spec = collection_spec(384, shard_number=6, replication_factor=2, write_consistency_factor=2)
    body = json.loads(spec.model_dump_json(exclude_none=True))
    assert (body["shard_number"], body["replication_factor"], body["write_consistency_factor"]) == (6, 2, 2)
    assert body["vectors"] == {"dense": {"size": 384, "distance": "Cosine"}}
    assert body["sparse_vectors"] == {"bm25": {"modifier": "idf"}}


def test_by_default_one_copy_and_the_servers_shard_count() -> None:
    body = json.loads(collection_spec(384).model_dump_json(exclude_none=True))
    assert "shard_number" not in body, "unset: the server decides (one shard per node)"
    assert (body["replication_factor"], body["write_consistency_factor"]) == (1, 1)


async def test_the_creation_path_takes_the_layout_from_the_settings(tmp_path: Path) -> None:
    settings = ObdalSettings(
        qdrant_url=f"path:{tmp_path}",
        embed_model="obdal/hashing-384",
        qdrant_shard_number=6,
        qdrant_replication_factor=2,
        qdrant_write_consistency_factor=2,
    )
    await close_index(await open_index(settings))
    # Local mode locks its directory per client: read it back once Obdal's client is closed.
    client = AsyncQdrantClient(path=str(tmp_path))
    try:
        params = (await client.get_collection(COLLECTION)).config.params
    finally:
        await client.close()
    expected = collection_spec(384, shard_number=6, replication_factor=2, write_consistency_factor=2)
    assert params.vectors == expected.vectors
    assert params.sparse_vectors == expected.sparse_vectors


def test_the_layout_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBDAL_QDRANT_SHARD_NUMBER", "6")
    monkeypatch.setenv("OBDAL_QDRANT_REPLICATION_FACTOR", "2")
    monkeypatch.setenv("OBDAL_QDRANT_WRITE_CONSISTENCY_FACTOR", "1")
    settings = ObdalSettings()
    assert (
        settings.qdrant_shard_number,
        settings.qdrant_replication_factor,
        settings.qdrant_write_consistency_factor,
    ) == (6, 2, 1)
    monkeypatch.setenv("OBDAL_QDRANT_REPLICATION_FACTOR", "0")
    with pytest.raises(ValueError, match="qdrant_replication_factor"):
        ObdalSettings()
