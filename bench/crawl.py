"""How fast a website becomes documents, and what re-syncing an unchanged one costs; targets:
the crawl's pages/s against uploading the same pages as files (the baseline, same run), and a
re-sync of the unchanged site re-embedding 0 pages with one request per page.

Starts ``obdal up`` (its own servers, in a temporary directory) allowed to fetch from loopback,
and the tests' help centre (tests/website.py) with ``--articles`` articles per topic (83: 506
pages). Baseline: one app uploads each page's main text as a Markdown file through
``POST /v1/files`` (as fast as ingest takes them) and waits until every file is ready. Then
another app adds the site as a source (``mode: crawl``) and waits until its sync is done and
every page's file is ready. Then the source is synced again, the site unchanged: the requests
the site answered (by status) and the pages sent to indexing. Prints a table; the last line is
JSON.

    .venv/bin/python bench/crawl.py [--articles 83]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from usage_lag import embedded_stack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.website import Website

__all__ = ["measure"]

_POLL_S = 0.5


def _ready(http: httpx.Client, count: int) -> int:
    """Wait until ``count`` files are ready; the chunks they make."""
    while True:
        files = http.get("/v1/files").json()["files"]
        if len(files) >= count and all(f["status"] in ("ready", "failed") for f in files):
            failed = [f for f in files if f["status"] == "failed"]
            assert not failed, failed[:3]
            return sum(int(f["chunks"]) for f in files)
        time.sleep(_POLL_S)


def _synced(http: httpx.Client, source_id: str, after: str | None) -> dict[str, Any]:
    while True:
        source: dict[str, Any] = http.get(f"/v1/sources/{source_id}").json()
        if source["status"] in ("ready", "failed") and source["last_sync_at"] not in (None, after):
            assert source["status"] == "ready", source
            return source
        time.sleep(_POLL_S)


def _tenant(admin: httpx.Client, url: str, name: str) -> httpx.Client:
    app_id = admin.post("/v1/admin/apps", json={"name": name}).json()["app_id"]
    key = admin.post(f"/v1/admin/apps/{app_id}/keys", json={"name": "bench", "rate_limit_rpm": 100_000})
    assert key.status_code == 201, key.text
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key.json()['key']}"}, timeout=60)


def measure(*, articles: int = 83) -> dict[str, Any]:
    env = {"OBDAL_OUTBOUND_ALLOW": "127.0.0.0/8", "OBDAL_SOURCE_TICK_S": "0.5", "OBDAL_CRAWL_DELAY_S": "0"}
    with (
        embedded_stack(stop_timeout_s=120, **env) as (url, token),
        Website(articles_per_topic=articles) as site,
    ):
        admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        pages = [p for p in site.public() if "/article-" in p]

        uploads = _tenant(admin, url, "crawl-baseline")
        began = time.perf_counter()
        for path in pages:
            title = site.public()[path]
            body = f"# {title}\n\n{site.text(path)}\n".encode()
            sent = uploads.post("/v1/files", files={"file": (f"{path.strip('/')}.md", body, "text/markdown")})
            assert sent.status_code == 202, sent.text
        upload_chunks = _ready(uploads, len(pages))
        upload_s = time.perf_counter() - began

        crawls = _tenant(admin, url, "crawl")
        began = time.perf_counter()
        created = crawls.post("/v1/sources", json={"url": f"{site.url}/", "max_pages": 2000})
        assert created.status_code == 202, created.text
        source_id = created.json()["source_id"]
        first = _synced(crawls, source_id, None)
        crawled_s = time.perf_counter() - began
        crawl_chunks = _ready(crawls, first["pages"] - first["last_sync"]["duplicate"])
        crawl_s = time.perf_counter() - began

        before = len(site.requests)
        began = time.perf_counter()
        queued = crawls.post(f"/v1/sources/{source_id}/sync")
        assert queued.status_code == 202, queued.text
        second = _synced(crawls, source_id, first["last_sync_at"])
        resync_s = time.perf_counter() - began
        statuses = Counter(status for _, _, status in site.requests[before:])

    found = first["last_sync"]["found"]
    return {
        "site_pages": len(site.public()),
        "articles": len(pages),
        "upload_articles_per_s": round(len(pages) / upload_s, 2),
        "upload_chunks_per_s": round(upload_chunks / upload_s, 1),
        "crawl_pages_found": found,
        "crawl_s_to_synced": round(crawled_s, 1),
        "crawl_s_to_indexed": round(crawl_s, 1),
        "crawl_pages_per_s": round(found / crawl_s, 2),
        "crawl_chunks_per_s": round(crawl_chunks / crawl_s, 1),
        "crawl_vs_upload_pages": round((found / crawl_s) / (len(pages) / upload_s), 2),
        "crawl_vs_upload_chunks": round((crawl_chunks / crawl_s) / (upload_chunks / upload_s), 2),
        "resync_s": round(resync_s, 1),
        "resync_site_requests": dict(sorted(statuses.items())),
        "resync_pages_reembedded": second["last_sync"]["indexed"],
        "resync_unchanged": second["last_sync"]["unchanged"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--articles", type=int, default=83, help="articles per topic (6 topics)")
    report = measure(articles=parser.parse_args().articles)
    width = max(len(k) for k in report)
    for name, value in report.items():
        print(f"{name:<{width}}  {value}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
