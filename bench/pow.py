"""What the proof of work costs a visitor's browser, a bot flooding a key, and the gateway.

Starts the servers and ``obdal up`` (bench/analytics_load.py's stack) with the default challenge
(PBKDF2-SHA-256, ``OBDAL_POW_COST`` iterations, prefix ``00``: about 256 attempts), makes a
publishable key with ``proof_of_work`` and a host page for it on a loopback origin, then measures:

- **browser**: Debian Chromium opens the page ``--loads`` times, each time opening the widget and
  asking at once, so the question waits for the solve: the time from the challenge's response to
  the chat request leaving (WebCrypto's PBKDF2, what a visitor pays);
- **flood**: ``--flood`` challenges fetched and solved with the ``altcha`` package's solver
  (hashlib's PBKDF2, OpenSSL: the fastest a CPU gets without a GPU), CPU seconds in all and per
  request, against the baseline of fetching the same challenges without solving them;
- **gateway**: CPU per verification (``verify_solution`` re-derives one key), against the same
  baseline (what answering a fetch costs the client).

Prints a table; the last line is JSON.

    .venv/bin/python bench/pow.py [--loads 20] [--flood 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from altcha import Challenge, Payload, create_challenge, solve_challenge, verify_solution
from analytics_load import stack
from playwright.sync_api import Request, Response, sync_playwright
from usage_lag import percentile

from obdal.servers import free_port

__all__ = ["measure"]

_CHROMIUM = "/usr/bin/chromium"
_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title></head>
<body><main><h1>Shop</h1></main>
<script src="{gateway}/widget.js" data-key="{key}" data-title="Help" async></script></body></html>"""


def _host(page: bytes, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _browser_solves(origin: str, loads: int) -> list[float]:
    """Milliseconds from each challenge's response to the question that carries its solution."""
    solves: list[float] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_CHROMIUM, args=["--no-sandbox"], headless=True)
        for _ in range(loads):
            page = browser.new_page()
            marks: dict[str, float] = {}

            def seen(response: Response, marks: dict[str, float] = marks) -> None:
                if response.url.endswith("/v1/widget/challenge"):
                    marks.setdefault("challenge", time.perf_counter())

            def sent(request: Request, marks: dict[str, float] = marks) -> None:
                if request.url.endswith("/v1/chat") and request.method == "POST":
                    marks.setdefault("chat", time.perf_counter())

            page.on("response", seen)
            page.on("request", sent)
            page.goto(origin)
            page.get_by_role("button", name="Open chat: Help").click()
            page.get_by_role("textbox").fill("Which courier do you ship with?")
            page.get_by_role("textbox").press("Enter")
            deadline = time.monotonic() + 60
            while "chat" not in marks and time.monotonic() < deadline:
                page.wait_for_timeout(20)
            assert "chat" in marks, marks
            assert "challenge" in marks, marks
            solves.append((marks["chat"] - marks["challenge"]) * 1000)
            page.close()
        browser.close()
    return solves


def _solve(challenge: dict[str, Any]) -> float:
    """CPU seconds this process spent solving ``challenge``."""
    started = time.process_time()
    solution = solve_challenge(Challenge.from_dict(challenge), timeout=120)
    assert solution is not None
    return time.process_time() - started


def measure(loads: int, flood: int) -> dict[str, Any]:
    with stack() as running:
        admin = httpx.Client(
            base_url=running.url, headers={"Authorization": f"Bearer {running.admin_token}"}, timeout=30
        )
        app_id = admin.post("/v1/admin/apps", json={"name": "pow bench"}).json()["app_id"]
        port = free_port()
        origin = f"http://127.0.0.1:{port}"
        made = admin.post(
            f"/v1/admin/apps/{app_id}/keys",
            json={
                "name": "widget",
                "kind": "publishable",
                "allowed_origins": [origin],
                "proof_of_work": True,
                "rate_limit_rpm": 1_000_000,
            },
        ).json()
        host = _host(_PAGE.format(gateway=running.url, key=made["key"]).encode(), port)
        try:
            browser = _browser_solves(origin, loads)
        finally:
            host.shutdown()
        client = httpx.Client(
            base_url=running.url,
            headers={"Authorization": f"Bearer {made['key']}", "Origin": origin},
            timeout=30,
        )
        started = time.process_time()
        challenges = [client.get("/v1/widget/challenge").json()["challenge"] for _ in range(flood)]
        fetch_cpu = time.process_time() - started
        # On every core, as a bot would; the CPU seconds are what the flood costs, wherever spent.
        with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            solve_cpu = sum(pool.map(_solve, challenges, chunksize=16))
        cost = challenges[0]["parameters"]["cost"]
    # The gateway's side, with a secret of its own: the same one derivation per question.
    secret = "bench secret"
    own = [create_challenge("PBKDF2/SHA-256", cost, hmac_secret=secret) for _ in range(50)]
    solved_own = [Payload(c, s) for c in own if (s := solve_challenge(c, timeout=60)) is not None]
    started = time.process_time()
    assert all(verify_solution(p, secret).verified for p in solved_own)
    verify_ms = (time.process_time() - started) * 1000 / len(solved_own)
    fetch_ms = fetch_cpu * 1000 / flood
    solve_ms = solve_cpu * 1000 / flood
    return {
        "cost": cost,
        "browser_solve_ms_p50": round(statistics.median(browser), 1),
        "browser_solve_ms_p95": round(percentile(browser, 0.95), 1),
        "flood_requests": flood,
        "flood_cpu_s": round(solve_cpu + fetch_cpu, 1),
        "flood_solve_ms_per_request": round(solve_ms, 2),
        "baseline_fetch_ms_per_request": round(fetch_ms, 2),
        "flood_cost_vs_baseline": round((solve_ms + fetch_ms) / fetch_ms, 1),
        "gateway_verify_ms": round(verify_ms, 3),
        "attacker_vs_gateway": round(solve_ms / verify_ms, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loads", type=int, default=20)
    parser.add_argument("--flood", type=int, default=1000)
    args = parser.parse_args()
    result = measure(args.loads, args.flood)
    width = max(len(k) for k in result)
    for name, value in result.items():
        print(f"{name:<{width}}  {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
