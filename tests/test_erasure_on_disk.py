"""Erased content leaves the disk: no copy of a deleted file or session under the data directory.

``obdal up`` on embedded defaults (JetStream, SecantusDB and the Edge index all persisting under
one data directory), with the index's compaction delay shortened to seconds. A file and a chat
turn carry unique markers; after ``DELETE /v1/files/{id}`` and ``DELETE /v1/sessions/{id}`` and
the bounds of docs/security.md ("Erased content on disk"), no file holds either marker, raw or
compressed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import secrets
import shutil
import signal
import time
import zlib
from pathlib import Path

import qdrant_edge as qe

from obdal.servers import free_port
from obdal_common.settings import ObdalSettings
from obdal_retrieval import Chunk, close_indexes, open_index
from obdal_retrieval.backend import DENSE, SPARSE
from tests.api import Api
from tests.conftest import BIN, clean_env, start_process, wait_http

# The index's compaction delay in this test (OBDAL_INDEX_COMPACT_AFTER_S; 5 min by default).
COMPACT_AFTER_S = 2.0
# What the test allows on top: the rewrite itself and metering's next batch (well under 1 s here).
SLACK_S = 10.0


def _decoded(data: bytes) -> list[bytes]:
    """``data`` and what it decompresses to if it is gzip or zlib (no stream of ours compresses;
    this catches one that starts to)."""
    found = [data]
    for decode in (gzip.decompress, zlib.decompress):
        with contextlib.suppress(OSError, zlib.error, EOFError):
            found.append(decode(data))
    return found


def holders(data_dir: Path, markers: list[str]) -> dict[str, list[str]]:
    """Every file under ``data_dir`` holding one of ``markers``, by marker."""
    found: dict[str, list[str]] = {}
    # os.walk skips a directory removed while walking (an index segment being rewritten).
    for root, _, names in os.walk(data_dir):
        for name in sorted(names):
            path = Path(root, name)
            try:
                blobs = _decoded(path.read_bytes())
            except OSError:
                continue  # removed while walking
            for marker in markers:
                if any(marker.encode() in blob for blob in blobs):
                    found.setdefault(marker, []).append(str(path.relative_to(data_dir)))
    return found


def test_erased_file_and_session_leave_no_copy_on_disk(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    env = clean_env(
        OBDAL_DATA_DIR=str(data_dir),
        OBDAL_GATEWAY_PORT=str(port),
        OBDAL_EMBED_MODEL="obdal/hashing-384",
        OBDAL_INDEX_COMPACT_AFTER_S=str(COMPACT_AFTER_S),
    )
    process = start_process([str(BIN / "obdal"), "up"], env, tmp_path / "obdal.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/v1/status", process)
        api = Api(url, (data_dir / "admin_token").read_text().strip())
        _, key = api.new_tenant("erasure")
        # Upper-case hex: Qdrant's LZ4 payload pages keep it literal (LZ4 only refers back to a
        # 4-byte repeat, and nothing else in a payload is upper-case hex).
        file_marker = f"QF{secrets.token_hex(10).upper()}"
        question_marker = f"QA{secrets.token_hex(10).upper()}"
        file_id = api.index(
            key, "vault.md", f"# Vault\n\nThe vault code word is {file_marker} and it opens the vault.\n"
        )
        response = api.chat(key, f"What is the vault code word? Ref {question_marker}")
        assert response.status_code == 200, response.text
        body = response.json()
        assert any(file_marker in source["snippet"] for source in body["sources"]), body
        session_id = body["session_id"]
        api.wait_session(key, session_id, messages=2)
        markers = [file_marker, question_marker]
        before = holders(data_dir, markers)
        # The walk does find the file's copies. (The question's is already erased from the bus,
        # and MongoDB only ever holds it sealed.)
        assert file_marker in before, before
        assert any("OBJ_obdal_file_bytes" in p for p in before[file_marker]), before
        assert any(p.startswith("index/") for p in before[file_marker]), before

        deleted = api.http.delete(f"/v1/files/{file_id}", headers=api.auth(key))
        assert deleted.status_code == 200, deleted.text
        erased = api.http.delete(f"/v1/sessions/{session_id}", headers=api.auth(key))
        assert erased.status_code == 200, erased.text
        erased_at = time.monotonic()

        left = holders(data_dir, markers)
        while left and time.monotonic() < erased_at + COMPACT_AFTER_S + SLACK_S:
            time.sleep(0.25)
            left = holders(data_dir, markers)
        assert left == {}, f"erased content still on disk: {left}"
        print(f"gone from the disk {time.monotonic() - erased_at:.1f} s after the erasure")
    finally:
        assert process.stop(signal.SIGINT) == 0, process.log()[-3000:]


def _chunk(file_id: str, text: str) -> Chunk:
    return Chunk(app_id="app_a", file_id=file_id, filename=f"{file_id}.md", position=0, text=text)


async def test_a_deleted_passage_leaves_the_edge_shard_after_the_compaction_delay(tmp_path: Path) -> None:
    gone, kept = f"QG{secrets.token_hex(10).upper()}", f"QK{secrets.token_hex(10).upper()}"
    settings = ObdalSettings(data_dir=tmp_path, embed_model="obdal/hashing-384", index_compact_after_s=0.5)
    index = await open_index(settings)
    try:
        await index.add([_chunk("file_1", f"The old code word is {gone}.")])
        await index.add([_chunk("file_2", f"The new code word is {kept}.")])
        assert set(holders(tmp_path, [gone, kept])) == {gone, kept}  # flushed, no WAL in between
        assert await index.delete_file("app_a", "file_1") == 1
        assert gone in holders(tmp_path, [gone]), "a delete alone leaves the payload in its segment"
        for _ in range(100):  # 0.5 s, then one rewrite of a tiny segment
            if not holders(tmp_path, [gone]):
                break
            await asyncio.sleep(0.1)
        assert holders(tmp_path, [gone, kept]).keys() == {kept}
        await index.add([_chunk("file_3", "Written after the rewrite.")])
        assert [h.file_id for h in await index.search("app_a", kept, limit=5)] == ["file_2"]
    finally:
        await close_indexes()
    reopened = await open_index(settings)
    try:
        assert await reopened.backend.count("app_a") == 2
    finally:
        await close_indexes()


async def test_a_shard_written_with_a_wal_is_rebuilt_without_one(tmp_path: Path) -> None:
    settings = ObdalSettings(data_dir=tmp_path, embed_model="obdal/hashing-384")
    shard_dir = settings.index_dir / "obdal_hashing_384"
    index = await open_index(settings)
    dim = await index.embedder.dimension()
    await index.add([_chunk("file_1", "Refunds are paid within 5 days.")])
    await close_indexes()
    # What an earlier version wrote: the same points, in a shard with a WAL.
    stored = qe.EdgeShard.load(str(shard_dir))
    records, _ = stored.scroll(qe.ScrollRequest(limit=10, with_payload=True, with_vector=True))
    stored.close()
    shutil.rmtree(shard_dir)
    old = qe.EdgeShard.create(
        str(shard_dir),
        qe.EdgeConfig(
            vectors={DENSE: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        ),
    )
    old.update(qe.UpdateOperation.upsert_points([qe.Point(r.id, r.vector or {}, r.payload) for r in records]))
    old.close()
    assert (shard_dir / "wal").exists()

    index = await open_index(settings)
    try:
        assert not (shard_dir / "wal").exists()
        assert [h.file_id for h in await index.search("app_a", "refunds paid", limit=5)] == ["file_1"]
    finally:
        await close_indexes()
