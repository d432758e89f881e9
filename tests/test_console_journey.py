"""A new support manager's first ten minutes in the console, in Debian Chromium: from signing in
to a working, origin-locked widget on their own site, and the key revoked again. Plus the
shell's way in: ``obdal operators add``."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import uuid
from pathlib import Path

from playwright.sync_api import Dialog, Locator, Page, expect

from obdal.servers import free_port
from tests.api import Api
from tests.browser import Site, chromium
from tests.conftest import BIN, Stack, clean_env
from tests.console import (
    PASSWORD,
    add_operator,
    choose_files,
    ensure_owner,
    help_centre,
    page_violations,
    screenshot,
    sign_in,
)

# The widget's own words when its key no longer works on this site (static/widget.js).
FAILED_CLOSED = "This assistant is not enabled for this website."
PAGE_BUDGET_GZ = 150 * 1024


def _tab_to(page: Page, target: Locator, *, most: int = 500) -> None:
    """Press Tab until ``target`` has the focus, as a keyboard user moves through a page."""
    for _ in range(most):
        if target.evaluate("e => e.getRootNode().activeElement === e"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {target}")


def _weight(page: Page) -> int:
    """Gzipped bytes of the page's HTML and the console files it loads, as a first visit fetches them."""
    html = page.request.get(page.url).body()
    total = len(gzip.compress(html))
    assets = set(re.findall(rb'(?:href|src)="(/console/static/[^"]+)"', html))
    module = re.search(rb'data-module="([a-z-]+)"', html)
    if module:
        assets |= {b"/console/static/" + module.group(1) + b".js", b"/console/static/console.js"}
    origin = page.url.split("/console", 1)[0]
    for asset in assets:
        total += len(gzip.compress(page.request.get(origin + asset.decode()).body()))
    return total


def test_obdal_operators_add_creates_an_operator_who_signs_in(api: Api, stack: Stack) -> None:
    app_id = api.create_app("operators cli")

    def obdal(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "obdal"), "operators", *args],
            env=clean_env(OBDAL_URL=stack.url, OBDAL_ADMIN_TOKEN=stack.admin_token),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    added = obdal(
        "add",
        "cli-editor@obdal.test",
        "--app",
        app_id,
        "--role",
        "editor",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr
    operator = json.loads(added.stdout)
    assert operator["roles"] == {app_id: "editor"}
    assert "password_hash" not in operator
    console = sign_in(api, "cli-editor@obdal.test")
    assert console.call("GET", "/v1/files", app=app_id).status_code == 200
    short = obdal("add", "cli-short@obdal.test", "--app", app_id, "--password-stdin", stdin="short\n")
    assert short.returncode != 0
    assert "password_too_short" in short.stderr
    assert obdal("add", "cli-none@obdal.test", "--password-stdin", stdin=PASSWORD + "\n").returncode != 0
    listed = json.loads(obdal("ls").stdout)["operators"]
    assert any(o["email"] == "cli-editor@obdal.test" for o in listed)
    removed = obdal("rm", operator["operator_id"])
    assert removed.returncode == 0, removed.stderr
    assert console.call("GET", "/v1/files", app=app_id).status_code == 401
    console.close()


def test_a_new_support_manager_goes_live_by_keyboard(api: Api, tmp_path: Path) -> None:
    """Sign in → create an app → three documents ready → the playground → a publishable key for
    the shop's origin → its snippet on the shop's page answers from the documents → the console
    shows that conversation and counts it → the key revoked, the shop's widget fails closed.
    Every step by keyboard; every console page visited passes axe and weighs < 150 KB gzipped."""
    ensure_owner(api)
    manager = f"manager-{uuid.uuid4().hex[:8]}@shop.test"
    add_operator(api, manager, {"*": "owner"})
    documents = help_centre(tmp_path)
    shop_port = free_port()
    shop_origin = f"http://127.0.0.1:{shop_port}"
    weights: dict[str, int] = {}

    def checked(page: Page, name: str) -> None:
        assert page_violations(page) == [], name
        weights[name] = _weight(page)

    with chromium() as browser:
        context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
        page = context.new_page()
        dialogs: list[str] = []

        def accept(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            dialog.accept()

        page.on("dialog", accept)

        # Sign in: the e-mail field has the focus.
        page.goto(f"{api.url}/console")
        expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
        checked(page, "sign-in")
        page.keyboard.type(manager)
        page.keyboard.press("Tab")
        page.keyboard.type(PASSWORD)
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", level=1)).to_have_text("Apps")
        checked(page, "apps")

        # Create the app; the console goes on to its documents.
        app_name = f"Zorblax shop {uuid.uuid4().hex[:6]}"
        _tab_to(page, page.get_by_label("Name", exact=True))
        page.keyboard.type(app_name)
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", level=1)).to_have_text("Documents")
        app_id = page.url.split("/apps/", 1)[1].split("/", 1)[0]

        # Three documents at once through the file chooser, opened from the keyboard.
        _tab_to(page, page.get_by_label("Choose files"))
        choose_files(page, lambda: page.keyboard.press("Enter"), [tmp_path / name for name in documents])
        rows = page.locator("[data-files] tbody tr")
        for name in documents:
            expect(rows.filter(has_text=name).locator(".badge")).to_have_text("ready", timeout=90_000)
        checked(page, "documents")

        # The playground, before going live.
        _tab_to(page, page.get_by_role("link", name="Playground"))
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", level=1)).to_have_text("Playground")
        _tab_to(page, page.get_by_label("Your question"))
        page.keyboard.type("Which courier do you ship with?")
        page.keyboard.press("Enter")
        answer = page.locator(".turn.assistant").last
        expect(answer.locator(".content")).to_contain_text("Zorblax", timeout=30_000)
        expect(answer.locator("ol.sources")).to_contain_text("shipping.md")
        checked(page, "playground")

        # A publishable key for the shop's origin; its tag is shown with the secret, once.
        _tab_to(page, page.get_by_role("link", name="Keys"))
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", level=1)).to_have_text("Keys")
        checked(page, "keys")
        form = page.locator("#create-key")
        _tab_to(page, form.get_by_label("Name", exact=True))
        page.keyboard.type("Shop site")
        page.keyboard.press("Tab")  # Kind: choose by typing, as a keyboard user does
        page.keyboard.type("publishable")
        expect(form.get_by_label("Kind")).to_have_value("publishable")
        _tab_to(page, form.get_by_label("Allowed origins, one per line"))
        page.keyboard.type(shop_origin)
        _tab_to(page, form.get_by_role("button", name="Create key"))
        page.keyboard.press("Enter")
        tag_box = page.locator("#new-snippet-code")
        expect(tag_box).to_contain_text('data-key="obd_pk_')
        _tab_to(page, page.get_by_role("button", name="Copy the tag"))
        page.keyboard.press("Enter")
        tag = str(page.evaluate("navigator.clipboard.readText()"))
        assert tag == tag_box.inner_text()
        assert re.fullmatch(r'<script src="[^"]+/widget\.js" data-key="obd_pk_\w+" async></script>', tag), tag

        # The shop's page with the tag: a grounded answer, by keyboard too.
        site = Site(
            f"<!doctype html><html lang='en'><title>Shop</title><body><h1>Shop</h1>{tag}</body></html>",
            port=shop_port,
        )
        shop = context.new_page()
        try:
            shop.goto(site.origin)
            launcher = shop.get_by_role("button", name=re.compile("^Open chat"))
            _tab_to(shop, launcher)
            shop.keyboard.press("Enter")
            box = shop.get_by_role("textbox", name="Your question")
            expect(box).to_be_focused()
            shop.keyboard.type("How long do parcels take to arrive?")
            shop.keyboard.press("Enter")
            expect(shop.locator("#obdal-widget").get_by_text("four days")).to_be_visible(timeout=30_000)

            # The console shows that conversation, and counts both questions.
            _tab_to(page, page.get_by_role("link", name="Conversations"))
            page.keyboard.press("Enter")
            expect(page.get_by_role("heading", level=1)).to_have_text("Conversations")
            for _ in range(30):
                if page.get_by_text("How long do parcels take to arrive?").count():
                    break
                page.wait_for_timeout(500)
                page.reload()
            expect(page.get_by_text("How long do parcels take to arrive?")).to_be_visible()
            checked(page, "conversations")
            _tab_to(page, page.get_by_role("link", name="Overview"))
            page.keyboard.press("Enter")
            requests_chart = page.get_by_role("img", name=re.compile("^Requests per day"))
            expect(requests_chart).to_have_attribute("aria-label", re.compile(r"\b2 in total"))
            expect(page.locator("dd.figure").first).to_have_text("2")
            checked(page, "overview")
            screenshot(page, "journey-overview")

            # Revoke the key: the shop's widget now fails closed, and says so.
            page.goto(f"{api.url}/console/apps/{app_id}/keys")
            _tab_to(page, page.locator("summary").filter(has_text="Manage Shop site"))
            page.keyboard.press("Enter")
            _tab_to(page, page.get_by_role("button", name="Revoke Shop site"))
            page.keyboard.press("Enter")
            expect(page.locator("tbody tr").filter(has_text="Shop site").locator(".badge")).to_have_text(
                "revoked"
            )
            assert dialogs[-1].startswith("Revoke Shop site?")
            shop.reload()
            _tab_to(shop, shop.get_by_role("button", name=re.compile("^Open chat")))
            shop.keyboard.press("Enter")
            shop.keyboard.type("Are you still there?")
            shop.keyboard.press("Enter")
            expect(shop.get_by_role("alert")).to_have_text(FAILED_CLOSED, timeout=20_000)
        finally:
            shop.close()
            site.close()
        context.close()
    heavy = {name: size for name, size in weights.items() if size >= PAGE_BUDGET_GZ}
    assert not heavy, f"pages over 150 KB gzipped: {heavy}"
