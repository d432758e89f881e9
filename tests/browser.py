"""What the browser tests share: Debian Chromium, a host page on its own loopback origin, and the
widget's two gestures (open it, ask)."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect, sync_playwright

from obdal.servers import free_port
from tests.api import Api

__all__ = ["PAGE", "POLICY", "Site", "ask", "chromium", "open_widget", "serious_violations", "shop_site"]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
POLICY = "Returns\n\nWe ship every parcel with Zorblax Couriers. Parcels arrive within four days."
# The host page's own CSS tries hard to break anything it can reach.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Shop</title>
<style>* {{ color: red !important; font-size: 40px !important; }}
button {{ display: none !important; }}</style>
</head><body><h1>A shop</h1><button id="own">the page's own button</button>
<script src="{gateway}/widget.js" data-key="{key}" data-title="Shop help" data-color="#0a7" async></script>
</body></html>"""


@contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Debian Chromium (what `make test` installs)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is missing: `make test` installs it (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


class Site:
    """A static host page on its own loopback origin."""

    def __init__(self, html: str, *, port: int | None = None) -> None:
        page = html.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *_: object) -> None:
                pass

        self.port = port or free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.origin = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def shop_site(api: Api, name: str) -> Iterator[tuple[Site, str]]:
    """A new app holding POLICY, and a host page embedding the widget with a publishable key
    allowed only from that page's origin: the page and the app's secret key."""
    app_id = api.create_app(name)
    secret = str(api.create_key(app_id)["key"])
    api.index(secret, "policy.md", POLICY)
    port = free_port()
    key = api.create_key(app_id, kind="publishable", allowed_origins=[f"http://127.0.0.1:{port}"])["key"]
    site = Site(PAGE.format(gateway=api.url, key=key), port=port)
    try:
        yield site, secret
    finally:
        site.close()


def open_widget(page: Page) -> None:
    page.get_by_role("button", name="Open chat: Shop help").click()
    expect(page.get_by_role("dialog", name="Shop help")).to_be_visible()


def ask(page: Page, question: str) -> None:
    # The widget ignores Enter while an answer is still streaming (Send is disabled until its
    # `end`), and the answer's text shows before that: wait for Send, as a person would.
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_enabled(timeout=20_000)
    box = page.get_by_role("textbox", name="Your question")
    box.fill(question)
    box.press("Enter")


def serious_violations(page: Page, *, within: str = "#obdal-widget") -> list[str]:
    """axe-core's serious and critical violations inside ``within`` (open shadow roots
    included), one line each: rule, impact and the first offending node."""
    results = Axe().run(page, context={"include": [[within]]})
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {v['nodes'][0]['target'] if v['nodes'] else '?'}"
        for v in results.response["violations"]
        if v.get("impact") in ("serious", "critical")
    ]
