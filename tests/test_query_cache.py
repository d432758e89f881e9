"""The query cache (obdal_chat.query_cache): a repeated question is answered from it, and no
change of the app's documents (an upload, a replacement, a deletion, a website page re-synced)
is ever answered with the passages from before it, from the moment the change reports done.

Unit tests of the bounded, fair LRU and of the cache over a real index; then the running stack,
its hits read from ``/metrics``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from obdal_chat.lru import FairLru
from obdal_chat.query_cache import QueryCache
from obdal_common.settings import ObdalSettings
from obdal_retrieval import Chunk, HybridIndex, close_indexes, open_index
from obdal_retrieval.generations import IndexGenerations
from tests.api import Api, poll
from tests.website import Website, fact

# --- the LRU -----------------------------------------------------------------------------------


def test_the_lru_never_holds_more_than_its_budget() -> None:
    lru: FairLru[int, str] = FairLru(max_bytes=1000)
    for n in range(500):
        lru.put("app_a", n, f"value {n}", size=30 + n % 70)
        assert lru.bytes <= 1000
    assert lru.get("app_a", 499) == "value 499"
    assert lru.get("app_a", 0) is None  # the least recently used went first
    lru.put("app_a", -1, "too big", size=1001)
    assert lru.get("app_a", -1) is None  # larger than the whole budget: not kept


def test_the_lru_evicts_the_least_recently_used() -> None:
    lru: FairLru[str, int] = FairLru(max_bytes=30)
    for key in ("a", "b", "c"):
        lru.put("app", key, 1, size=10)
    assert lru.get("app", "a") == 1  # used again: "b" is now the oldest
    lru.put("app", "d", 1, size=10)
    assert [lru.get("app", key) for key in "abcd"] == [1, None, 1, 1]
    lru.put("app", "d", 2, size=10)  # replaced, not counted twice
    assert (lru.bytes, len(lru), lru.get("app", "d")) == (30, 3, 2)


def test_a_busy_app_evicts_its_own_entries_not_a_quiet_one_s() -> None:
    lru: FairLru[int, int] = FairLru(max_bytes=100 * 10)
    for n in range(20):
        lru.put("quiet", n, n, size=10)
    for n in range(10_000):
        lru.put("busy", n, n, size=10)
    assert all(lru.get("quiet", n) == n for n in range(20))
    assert lru.bytes <= 1000


# --- the cache over a real index -----------------------------------------------------------------


class Generations(IndexGenerations):
    """The generations as ingest would bump them, without NATS; counts its reads."""

    def __init__(self) -> None:
        self.now = 0
        self.reads = 0

    async def bump(self, app_id: str) -> int:
        self.now += 1
        return self.now

    async def current(self, app_id: str) -> int:
        self.reads += 1
        return self.now


@pytest.fixture
async def index(tmp_path: Path) -> AsyncIterator[HybridIndex]:
    yield await open_index(ObdalSettings(data_dir=tmp_path, embed_model="obdal/hashing-384"))
    await close_indexes()


def _chunk(file_id: str, text: str) -> Chunk:
    return Chunk(app_id="app_a", file_id=file_id, filename=f"{file_id}.md", position=0, text=text)


async def test_a_search_is_served_until_the_generation_changes(index: HybridIndex) -> None:
    generations = Generations()
    cache = QueryCache(index, generations=generations, max_bytes=2**20)
    await index.add([_chunk("file_1", "The Harrowgate depot opens at eight.")])
    question = "When does the Harrowgate depot open?"

    async def ask(**options: Any) -> Any:
        vector = await cache.embed("app_a", question)
        return await cache.ground(
            "app_a", question, context=(), limit=5, min_relevance=-1.0, dense=vector, **options
        )

    first = await ask()
    assert [hit.file_id for hit in first.passages] == ["file_1"]
    assert await ask() is first  # the same search, not searched again
    # Anything the search depends on is in the key: another limit or floor is another search.
    assert (
        await cache.ground("app_a", question, context=(), limit=1, min_relevance=-1.0, dense=None)
        is not first
    )
    assert (
        await cache.ground("app_a", question, context=("Hi",), limit=5, min_relevance=-1.0, dense=None)
        is not first
    )
    assert (
        await cache.ground("app_b", question, context=(), limit=5, min_relevance=-1.0, dense=None)
        is not first
    )

    await index.add([_chunk("file_2", "The Harrowgate depot opens at eight, and at nine on Sundays.")])
    await generations.bump("app_a")
    second = await ask()
    assert {hit.file_id for hit in second.passages} == {"file_1", "file_2"}
    await index.delete_file("app_a", "file_1")
    await generations.bump("app_a")
    assert [hit.file_id for hit in (await ask()).passages] == ["file_2"]

    reads = generations.reads
    assert (
        await cache.ground("app_a", "hello", context=(), limit=5, min_relevance=0.0, dense=None)
    ).outcome == ("smalltalk")
    assert generations.reads == reads  # small talk searches nothing, so checks nothing
    assert "searches 1 of " in (await cache.status()).detail


async def test_the_cache_stays_within_its_budget(index: HybridIndex) -> None:
    await index.add(
        [_chunk(f"file_{n}", f"Parcel locker {n} is at the Kelby station, gate {n}.") for n in range(20)]
    )
    cache = QueryCache(index, generations=Generations(), max_bytes=64 * 1024)
    for n in range(300):
        question = f"Where is parcel locker {n}?"
        await cache.ground(
            "app_a",
            question,
            context=(),
            limit=5,
            min_relevance=-1.0,
            dense=await cache.embed("app_a", question),
        )
        assert cache.bytes <= 64 * 1024
    assert cache.bytes > 32 * 1024  # and it is used


# --- the running stack ---------------------------------------------------------------------------


def _lookups(api: Api) -> dict[tuple[str, str], float]:
    """``obdal_chat_cache_lookups_total`` by (cache, outcome), from the stack's /metrics."""
    text = api.admin.get("/metrics").text
    name = "obdal_chat_cache_lookups_total{"
    found: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line.startswith(name):
            labels_text, _, value = line[len(name) :].rpartition("} ")
            labels = dict(part.split("=", 1) for part in labels_text.split(",") if part)
            key = (labels["obdal_cache"].strip('"'), labels["obdal_cache_outcome"].strip('"'))
            found[key] = found.get(key, 0.0) + float(value)
    return found


def _ask(api: Api, key: str, question: str) -> dict[str, Any]:
    response = api.chat(key, question)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _asked_twice(api: Api, key: str, question: str) -> dict[str, Any]:
    """The answer to ``question``, asked twice: the second time from the cache, the same."""
    first = _ask(api, key, question)
    before = _lookups(api)
    again = _ask(api, key, question)
    after = _lookups(api)
    assert after.get(("search", "hit"), 0) >= before.get(("search", "hit"), 0) + 1, (before, after)
    assert after.get(("embedding", "hit"), 0) >= before.get(("embedding", "hit"), 0) + 1, (before, after)
    assert (again["content"], again["sources"]) == (first["content"], first["sources"])
    return again


def _snippets(body: dict[str, Any]) -> dict[str, str]:
    return {source["file_id"]: source["snippet"] for source in body["sources"]}


def test_uploads_replacements_and_deletions_are_never_answered_from_before(api: Api) -> None:
    _, key = api.new_tenant("query-cache")
    question = "When does the Quillmoor shop open?"
    hours = api.upload(key, "hours.md", b"# Opening hours\n\nThe Quillmoor shop opens at eight.", wait="30")
    assert hours.status_code == 200, hours.text
    hours_id = hours.json()["file_id"]
    assert list(_snippets(_asked_twice(api, key, question))) == [hours_id]

    # A document that answers it better, uploaded: cited by the very next answer.
    better = api.upload(
        key,
        "quillmoor.md",
        b"# Quillmoor shop hours\n\nThe Quillmoor shop opens at eight on weekdays and at nine on Saturdays.",
        wait="30",
    )
    assert better.status_code == 200, better.text
    better_id = better.json()["file_id"]
    assert better_id in _snippets(_asked_twice(api, key, question))

    # The cited file replaced: its new text, never the old, from the moment it is ready.
    replaced = api.http.put(
        f"/v1/files/{hours_id}",
        headers=api.auth(key),
        params={"wait": "30"},
        files={"file": ("hours.md", b"# Opening hours\n\nThe Quillmoor shop opens at ten.")},
    )
    assert (replaced.status_code, replaced.json()["status"]) == (200, "ready"), replaced.text
    snippets = _snippets(_asked_twice(api, key, question))
    assert "ten" in snippets[hours_id], snippets
    assert "eight" not in snippets[hours_id], snippets

    # The better one deleted: never cited again.
    deleted = api.http.delete(f"/v1/files/{better_id}", headers=api.auth(key))
    assert deleted.status_code == 200, deleted.text
    assert better_id not in _snippets(_ask(api, key, question))
    assert list(_snippets(_asked_twice(api, key, question))) == [hours_id]

    # All of them erased: nothing left to cite.
    erased = api.http.delete("/v1/files", headers=api.auth(key), params={"confirm": "true"})
    assert erased.status_code == 200, erased.text
    assert _ask(api, key, question)["sources"] == []


def test_a_re_synced_page_is_never_answered_from_before(api: Api) -> None:
    _, key = api.new_tenant("query-cache-site")
    page, question = "/orders/article-1", "How long is the return window for topic-0 article 1?"
    changed = "The return window for topic-0 article 1 is now exactly 93 days, since the policy changed."

    def page_file(version: int) -> dict[str, Any]:
        files: list[dict[str, Any]] = poll(
            lambda: api.http.get("/v1/files", headers=api.auth(key)).json()["files"],
            lambda files: [f["status"] for f in files if f["version"] == version] == ["ready"],
            timeout=60,
            what=f"the page's version {version} indexed",
        )
        return files[0]

    def synced(after: str | None) -> None:
        poll(
            lambda: api.http.get(f"/v1/sources/{source_id}", headers=api.auth(key)).json(),
            lambda s: s["status"] in ("ready", "failed") and s["last_sync_at"] not in (None, after),
            timeout=60,
            what="the source synced",
        )

    with Website(articles_per_topic=1) as site:
        created = api.http.post(
            "/v1/sources",
            headers=api.auth(key),
            json={"type": "website", "url": f"{site.url}{page}", "mode": "page"},
        )
        assert created.status_code == 202, created.text
        source_id = created.json()["source_id"]
        synced(None)
        file_id = page_file(1)["file_id"]
        before = _snippets(_asked_twice(api, key, question))
        assert fact(0, 1).split(" is ")[1] in before[file_id], before

        site.change(page, changed)
        sync = api.http.post(f"/v1/sources/{source_id}/sync", headers=api.auth(key))
        assert sync.status_code == 202, sync.text
        synced(sync.json()["last_sync_at"])
        assert page_file(2)["file_id"] == file_id
        after = _snippets(_asked_twice(api, key, question))
        assert "93 days" in after[file_id], after
        assert fact(0, 1).split(" is ")[1] not in after[file_id], after
