"""Websites as sources through the public API on the running stack: a real help centre on loopback
crawled into documents, cited with its URLs; edits between syncs (a page changed, one removed,
one added) seen through answers; deletion; and every refusal, in words."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api import Api, poll
from tests.website import PRIVATE, TOPICS, Website, fact

CHANGED = "The return window for changed articles is now exactly 93 days, starting today."
ADDED = "Gift cards bought in our shop never expire and can be used for any order."


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _code(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return str(response.json()["error"]["code"])


def _synced(api: Api, key: str, source_id: str, *, after: str | None = None) -> dict[str, Any]:
    """The source once a sync newer than ``after`` (its last_sync_at) has finished."""
    return poll(
        lambda: _ok(api.http.get(f"/v1/sources/{source_id}", headers=api.auth(key))),
        lambda s: s["status"] in ("ready", "failed") and s["last_sync_at"] not in (None, after),
        timeout=180,
        what=f"source {source_id} synced",
    )


def _all_pages(api: Api, key: str, source_id: str) -> list[dict[str, Any]]:
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 40, **({"cursor": cursor} if cursor else {})}
        body = _ok(api.http.get(f"/v1/sources/{source_id}/pages", headers=api.auth(key), params=params))
        pages += body["pages"]
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


def _ready_files(api: Api, key: str, count: int) -> list[dict[str, Any]]:
    def files() -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = _ok(api.http.get("/v1/files", headers=api.auth(key)))["files"]
        return listed

    return poll(
        files,
        lambda fs: len(fs) == count and all(f["status"] in ("ready", "failed") for f in fs),
        timeout=240,
        what=f"{count} files indexed",
    )


def _cited(api: Api, key: str, question: str) -> tuple[str, list[dict[str, Any]]]:
    body = _ok(api.chat(key, question))
    return str(body["content"]), list(body["sources"])


def test_a_website_becomes_cited_documents_and_follows_its_edits(api: Api) -> None:
    _, key = api.new_tenant("website")
    with Website() as site:
        created = _ok(
            api.http.post(
                "/v1/sources",
                headers=api.auth(key),
                json={"type": "website", "url": f"{site.url}/", "mode": "crawl", "max_pages": 300},
            ),
            202,
        )
        assert created["status"] == "queued"
        assert created["source_id"].startswith("src_")
        assert "lease_owner" not in created
        assert "app_id" not in created
        source_id = created["source_id"]
        # One at a time: a second sync cannot be asked for while one is queued.
        again = api.http.post(f"/v1/sources/{source_id}/sync", headers=api.auth(key))
        assert _code(again, 409) == "sync_in_progress"

        first = _synced(api, key, source_id)
        public = site.public()
        assert first["status"] == "ready", first
        # Every public page, and the article again under /print/ and under /share/ (a canonical
        # link): duplicates, one document; the /private/ pages robots.txt disallows, never fetched.
        assert first["last_sync"] == {
            "found": len(public) + 2,
            "indexed": len(public),
            "unchanged": 0,
            "duplicate": 2,
            "failed": 0,
            "blocked": len(PRIVATE),
            "removed": 0,
            "requests": len(public) + 2,
        }
        assert first["pages"] == len(public) + 2
        assert first["next_sync_at"] is None  # resync off
        assert not any(path.startswith("/private/") for _, path, _ in site.requests)
        assert all(p not in {path for _, path, _ in site.requests} for p in PRIVATE)

        pages = _all_pages(api, key, source_id)
        by_url = {p["url"]: p for p in pages}
        assert {f"{site.url}{path}" for path in public} <= set(by_url)
        assert len(pages) == len(by_url)  # the listing's pages do not repeat
        article = f"/{TOPICS[2]}/article-5"
        assert by_url[f"{site.url}{article}"]["title"] == public[article]
        assert by_url[f"{site.url}{article}"]["status"] == "indexed"

        # Pages are documents: in the file listing with their URL and source.
        files = _ready_files(api, key, len(public))
        assert all(f["status"] == "ready" for f in files), [f for f in files if f["status"] != "ready"]
        page_file = next(f for f in files if f["url"] == f"{site.url}{article}")
        assert page_file["source_id"] == source_id
        assert page_file["filename"] == public[article]

        # Answers cite the page by its URL and title.
        content, sources = _cited(api, key, "How long is the return window for topic-2 article 5?")
        assert fact(2, 5).split(" is ")[1].rstrip(".") in content
        assert sources[0]["url"] == f"{site.url}{article}"
        assert sources[0]["filename"] == public[article]

        # The site changes: one page edited, one removed, one added.
        edited, removed = f"/{TOPICS[1]}/article-3", f"/{TOPICS[3]}/article-7"
        site.change(edited, CHANGED)
        site.remove(removed)
        site.add(f"/{TOPICS[0]}/gift-cards", "Gift cards", ADDED)
        before = len(site.requests)
        second = _synced(
            api,
            key,
            source_id,
            after=_ok(api.http.post(f"/v1/sources/{source_id}/sync", headers=api.auth(key)), 202)[
                "last_sync_at"
            ],
        )
        stats = second["last_sync"]
        assert stats["indexed"] == 2, stats  # the edited page and the new one: nothing else embedded
        # The other pages and the two aliases: unchanged; the removed one: gone, once (kept).
        assert stats == {**stats, "failed": 0, "removed": 0}
        # Every page but the edited and the removed one is unchanged. The aliases: unchanged, a
        # duplicate again (met before their original this time), or, for the one whose canonical
        # link names a page already met, not yielded at all; the removed page: gone, once.
        assert stats["unchanged"] >= len(public) - 2, stats
        assert stats["found"] == stats["unchanged"] + stats["duplicate"] + stats["indexed"] + 1, stats
        assert len(public) + 2 <= stats["found"] <= len(public) + 1 + 2, stats
        # Every unchanged article cost one conditional request, answered 304 without a body.
        article_hits = [
            (path, status)
            for _, path, status in site.requests[before:]
            if "/article-" in path and not path.startswith(("/print", "/share"))
        ]
        # The articles of topics whose sidebar list did not change answered 304: no body. Those of
        # the two topics that gained or lost an article were sent again (their sidebar changed)
        # and were unchanged all the same: same main content, nothing embedded (stats above).
        untouched = [
            p
            for p in site.article_paths()
            if "/article-" in p and p != edited and p.split("/")[1] not in (TOPICS[0], TOPICS[3])
        ]
        assert sorted(p for p, s in article_hits if s == 304) == sorted(untouched)
        assert (edited, 200) in article_hits
        assert (f"{removed}", 404) in article_hits
        removed_page = next(p for p in _all_pages(api, key, source_id) if p["url"] == f"{site.url}{removed}")
        assert removed_page["status"] == "gone"  # once may be an outage: still answerable

        # The sync queues what changed; the new and the edited page are answerable once indexed.
        _ready_files(api, key, len(public) + 1)
        content, sources = _cited(api, key, "Do gift cards expire?")
        assert "never expire" in content
        assert sources[0]["url"] == f"{site.url}/{TOPICS[0]}/gift-cards"
        content, _ = _cited(api, key, "What is the return window for changed articles?")
        assert "93 days" in content

        # Gone a second time: removed, with its passages.
        third = _synced(
            api,
            key,
            source_id,
            after=_ok(api.http.post(f"/v1/sources/{source_id}/sync", headers=api.auth(key)), 202)[
                "last_sync_at"
            ],
        )
        assert third["last_sync"]["removed"] == 1
        assert third["last_sync"]["indexed"] == 0
        urls = {f["url"] for f in _ok(api.http.get("/v1/files", headers=api.auth(key)))["files"]}
        assert f"{site.url}{removed}" not in urls
        assert f"{site.url}/{TOPICS[0]}/gift-cards" in urls

        # Deleting the source deletes every page's document before it answers.
        gone = _ok(api.http.delete(f"/v1/sources/{source_id}", headers=api.auth(key)))
        assert gone["deleted"] is True
        assert gone["pages_deleted"] == len(public) + 2 + len(PRIVATE)  # the blocked ones' records too
        assert gone["vectors_deleted"] > 0
        left = _ok(api.http.get("/v1/files", headers=api.auth(key)))["files"]
        assert left == [], [(f["url"], f["status"], f["file_id"]) for f in left]
        _, sources = _cited(api, key, "Do gift cards expire?")
        assert sources == []
        missing = api.http.get(f"/v1/sources/{source_id}", headers=api.auth(key))
        assert _code(missing, 404) == "source_not_found"
        assert _ok(api.http.get("/v1/sources", headers=api.auth(key))) == {"sources": []}


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://10.0.0.1/help", "private_address"),
        ("http://169.254.169.254/latest/meta-data/", "private_address"),
        ("http://[::1]/", "private_address"),
        ("http://2130706433/", "private_address"),  # 127.0.0.1 spelled in decimal: allowed (tests)
        ("http://user:secret@example.com/", "credentials_in_url"),
        ("ftp://example.com/", "invalid_source"),
        ("not a url", "invalid_source"),
    ],
)
def test_a_url_that_may_not_be_fetched_is_refused_at_once(api: Api, url: str, code: str) -> None:
    _, key = api.new_tenant("refused")
    response = api.http.post("/v1/sources", headers=api.auth(key), json={"url": url})
    if url == "http://2130706433/":
        # The test stack allows 127.0.0.0/8 (OBDAL_OUTBOUND_ALLOW): the decimal spelling is that.
        assert response.status_code == 202, response.text
        return
    assert _code(response, 422) == code
    assert response.json()["error"]["message"]
    assert _ok(api.http.get("/v1/sources", headers=api.auth(key))) == {"sources": []}


def test_bad_sources_and_callers_get_clear_errors(api: Api) -> None:
    app_id, key = api.new_tenant("source-errors")
    post = lambda body, k=key: api.http.post("/v1/sources", headers=api.auth(k), json=body)  # noqa: E731
    good = "http://127.0.0.1:9/"
    assert _code(post({"url": good, "max_pages": 0}), 422) == "invalid_source"
    assert "max_pages" in post({"url": good, "max_pages": 10**9}).json()["error"]["message"]
    assert _code(post({"url": good, "max_depth": 99}), 422) == "invalid_source"
    assert _code(post({"url": good, "resync": "every tuesday"}), 422) == "invalid_source"
    assert _code(post({"url": good, "include": ["help/*"]}), 422) == "invalid_source"
    assert post({"url": good, "mode": "everything"}).status_code == 400
    assert post({"url": good, "type": "ftp"}).status_code == 400
    assert post({"url": good, "colour": "red"}).status_code == 400
    assert post({}).status_code == 400
    weekly = _ok(post({"url": good, "resync": "0 3 * * 1", "mode": "page"}), 202)
    assert weekly["resync"] == "0 3 * * 1"
    # Nothing listens there: the sync fails as a whole, and says why, in words.
    failed = _synced(api, key, weekly["source_id"])
    assert failed["status"] == "failed"
    # Its robots.txt is the first request, so that is what could not be read: nothing fetched.
    assert failed["error_code"] == "robots_unavailable", failed
    assert "robots.txt" in failed["error"]
    assert "127.0.0.1:9" in failed["error"], failed["error"]
    assert failed["errors"][0]["url"] == good
    assert failed["next_sync_at"] is not None  # tried again at its next scheduled time

    # Scopes: reading takes files:read, changing files:write; a publishable key neither.
    reader = api.create_key(app_id, scopes=["files:read"])["key"]
    assert _code(post({"url": good}, reader), 403) == "insufficient_scope"
    assert _ok(api.http.get("/v1/sources", headers=api.auth(reader)))["sources"][0]["url"] == good
    widget = api.create_key(app_id, kind="publishable", allowed_origins=["http://127.0.0.1:1"])["key"]
    assert api.http.get("/v1/sources", headers=api.auth(widget)).status_code in (401, 403)
    assert api.http.get("/v1/sources").status_code == 401

    # Another app's source does not exist for this one.
    _, other = api.new_tenant("source-errors-other")
    assert _code(api.http.get(f"/v1/sources/{weekly['source_id']}", headers=api.auth(other)), 404)
    for method, path in (
        ("GET", "/v1/sources/src_nothere"),
        ("GET", "/v1/sources/src_nothere/pages"),
        ("POST", "/v1/sources/src_nothere/sync"),
        ("DELETE", "/v1/sources/src_nothere"),
        ("GET", "/v1/sources/not-an-id"),
    ):
        assert _code(api.http.request(method, path, headers=api.auth(key)), 404) == "source_not_found"
    pages = f"/v1/sources/{weekly['source_id']}/pages"
    assert _code(api.http.get(pages, headers=api.auth(key), params={"limit": 0}), 400) == "invalid_limit"
    assert _code(api.http.get(pages, headers=api.auth(key), params={"cursor": "x"}), 400) == "invalid_cursor"


def test_the_routes_are_in_the_openapi_document(api: Api) -> None:
    paths = _ok(api.http.get("/docs/openapi.json"))["paths"]
    assert {"post", "get"} <= set(paths["/v1/sources"])
    assert {"get", "delete"} <= set(paths["/v1/sources/{source_id}"])
    assert "get" in paths["/v1/sources/{source_id}/pages"]
    assert "post" in paths["/v1/sources/{source_id}/sync"]
