"""How fast the console's pages answer for an app with 10,000 sessions and 1,000 files, and how
much each page weighs; target: every page's server time p95 < 200 ms, every page < 150 KB gzipped.

Starts the servers and ``obdal up`` on them in a temporary directory (bench/analytics_load.py's
stack), loads one app: ``--sessions`` sessions of 2 turns each over 30 days, published onto the
events stream and stored by the real metering consumer, and ``--files`` small Markdown files
uploaded through ``POST /v1/files`` and indexed by ingest. Then signs in as the first owner and
times ``--requests`` loads of every console page (the HTML only: what the server does), and
weighs each page as a browser fetches it the first time: the HTML, the stylesheet, console.js
and the page's own module, each gzipped. Prints a table; the last line is JSON.

    .venv/bin/python bench/console.py [--sessions 10000] [--files 1000] [--requests 30]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import re
import statistics
import time
from typing import Any

import httpx
from analytics_load import _events, _publish, stack
from usage_lag import percentile

__all__ = ["measure"]

_PASSWORD = "bench password, long enough"
_UPLOADS_AT_ONCE = 16
_POLL_S = 5.0
_UPLOAD_TRIES = 10


def _upload_files(http: httpx.Client, files: int) -> int:
    """Upload ``files`` small Markdown files; how many uploads were answered 503 and retried."""
    retried: list[int] = []

    def one(n: int) -> None:
        body = f"# Article {n}\n\nHow to do thing {n}: open the settings, choose option {n}, save.\n"
        for _ in range(_UPLOAD_TRIES):
            response = http.post(
                "/v1/files", files={"file": (f"article-{n:04d}.md", body.encode(), "text/markdown")}
            )
            if response.status_code != 503:  # ingest busy embedding: retried, as a client should
                break
            retried.append(n)
            time.sleep(1)
        assert response.status_code == 202, response.text

    for at in range(0, files, _UPLOADS_AT_ONCE):
        for n in range(at, min(at + _UPLOADS_AT_ONCE, files)):
            one(n)
    return len(retried)


def _loaded(http: httpx.Client, *, turns: int, files: int) -> bool:
    """Whether analytics counts every turn and every file is ready; an answer other than 200
    (the key's rate limit, a service still busy) only means not yet."""
    analytics = http.get("/v1/analytics")
    if analytics.status_code != 200 or analytics.json()["totals"]["messages"] < turns:
        return False
    listed = http.get("/v1/files")
    return listed.status_code == 200 and sum(f["status"] == "ready" for f in listed.json()["files"]) >= files


def _weight(http: httpx.Client, path: str) -> dict[str, int]:
    """Gzipped bytes of the page and of what it loads from the console's static files."""
    html = http.get(path).content
    sizes = {"html": len(gzip.compress(html))}
    assets = set(re.findall(rb'(?:href|src)="(/console/static/[^"]+)"', html))
    module = re.search(rb'data-module="([a-z-]+)"', html)
    if module:
        assets.add(b"/console/static/" + module.group(1) + b".js")
    for asset in sorted(assets):
        sizes[asset.decode()] = len(gzip.compress(http.get(asset.decode()).content))
    sizes["total"] = sum(sizes.values())
    return sizes


def measure(*, sessions: int = 10_000, files: int = 1000, requests: int = 30) -> dict[str, Any]:
    with stack() as s:
        admin = httpx.Client(base_url=s.url, headers={"Authorization": f"Bearer {s.admin_token}"}, timeout=60)
        app_id = admin.post("/v1/admin/apps", json={"name": "console-bench"}).json()["app_id"]
        created = admin.post(f"/v1/admin/apps/{app_id}/keys", json={"name": "bench"}).json()
        key = httpx.Client(base_url=s.url, headers={"Authorization": f"Bearer {created['key']}"}, timeout=60)
        events = _events(app_id, created["key_id"], sessions * 2, days=30, turns_per_session=2)
        began = time.perf_counter()
        asyncio.run(_publish(s.nats_url, events))
        retried = _upload_files(key, files)
        # Turn events feed analytics and sessions (not usage, which only the chat's answers feed).
        while not _loaded(key, turns=len(events), files=files):
            time.sleep(_POLL_S)
        loaded_s = time.perf_counter() - began

        http = httpx.Client(base_url=s.url, timeout=60)
        setup = http.post(
            "/v1/console/setup",
            json={"admin_token": s.admin_token, "email": "bench@obdal.test", "password": _PASSWORD},
        )
        assert setup.status_code == 201, setup.text
        session_id = events[-1].session_id
        base = f"/console/apps/{app_id}"
        pages = {
            "apps": "/console",
            "overview": base,
            "documents": f"{base}/documents",
            "playground": f"{base}/playground",
            "keys": f"{base}/keys",
            "widget": f"{base}/widget",
            "conversations": f"{base}/conversations",
            "conversation": f"{base}/conversations/{session_id}",
            "settings": f"{base}/settings",
            "audit": f"{base}/audit",
            "answers": f"{base}/answers",
            "unanswered": f"{base}/unanswered",
            "operators": "/console/operators",
        }
        results: dict[str, Any] = {}
        for name, path in pages.items():
            times = []
            for _ in range(requests):
                t0 = time.perf_counter()
                response = http.get(path)
                times.append(time.perf_counter() - t0)
                assert response.status_code == 200, f"{path}: {response.status_code} {response.text[-900:]}"
            results[name] = {
                "p50_ms": round(statistics.median(times) * 1000, 1),
                "p95_ms": round(percentile(times, 0.95) * 1000, 1),
                "kb_gz": round(_weight(http, path)["total"] / 1024, 1),
            }
    return {
        "sessions": sessions,
        "turns": len(events),
        "files": files,
        "load_s": round(loaded_s, 1),
        "uploads_retried_503": retried,
        "pages": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    report = measure(sessions=args.sessions, files=args.files, requests=args.requests)
    print(
        f"{report['sessions']} sessions, {report['files']} files, loaded in {report['load_s']} s"
        f" ({report['uploads_retried_503']} uploads answered 503 and retried)"
    )
    print(f"{'page':<14}{'p50 ms':>9}{'p95 ms':>9}{'KB gz':>8}")
    for name, row in report["pages"].items():
        print(f"{name:<14}{row['p50_ms']:>9}{row['p95_ms']:>9}{row['kb_gz']:>8}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
