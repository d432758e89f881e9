"""The console's Keys and Widget pages in Chromium against the running stack, and the API they
stand on: keys created (the secret shown once, copied), refused origins explained, edited,
rotated and revoked; the widget's look set as app settings, previewed live, embedded with the
copied tag on another origin (which then shows that look); the widget's log reachable by
keyboard; viewers refused by the API; the widget's own config read only with a publishable key
from an allowed origin."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from obdal.servers import free_port
from tests.api import Api, poll
from tests.browser import Site, chromium, serious_violations
from tests.console import add_operator, browser_sign_in, ensure_owner, page_violations, screenshot, sign_in

_SECRET = re.compile(r"^obd_pk_[A-Za-z0-9]{16}_[A-Za-z0-9]{32}$")


def _unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def _ok(response: httpx.Response) -> Any:
    assert response.status_code in (200, 201), response.text
    return response.json()


def _code(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return str(response.json()["error"]["code"])


def _clipboard(page: Page) -> str:
    return str(page.evaluate("navigator.clipboard.readText()"))


def _row(page: Page, name: str) -> Any:
    return page.locator("tbody tr").filter(
        has=page.get_by_role("rowheader", name=re.compile(re.escape(name)))
    )


def test_roles_widget_settings_and_the_widgets_own_config_through_the_api(api: Api) -> None:
    ensure_owner(api)
    app_id = api.create_app(_unique("console-keys-api"))
    viewer = sign_in(api, add_operator(api, f"{_unique('viewer')}@obdal.test", {app_id: "viewer"})["email"])
    editor = sign_in(api, add_operator(api, f"{_unique('editor')}@obdal.test", {app_id: "editor"})["email"])
    public = httpx.Client(base_url=api.url, timeout=30)
    try:
        held = api.create_key(app_id)
        # A viewer reads the widget's look, and changes nothing: no key, no revocation, no look.
        assert _ok(viewer.call("GET", f"/v1/admin/apps/{app_id}/widget"))["title"] is None
        assert _code(viewer.call("GET", f"/v1/admin/apps/{app_id}/keys"), 403) == "role_forbids"
        assert (
            _code(viewer.call("POST", f"/v1/admin/apps/{app_id}/keys", json={"name": "x"}), 403)
            == "role_forbids"
        )
        assert _code(viewer.call("DELETE", f"/v1/admin/keys/{held['key_id']}"), 403) == "role_forbids"
        look = {"title": "Parcel help", "color": "#AA3300", "position": "left"}
        assert _code(viewer.call("PUT", f"/v1/admin/apps/{app_id}/widget", json=look), 403) == "role_forbids"
        # Without the CSRF token even an editor's change is refused.
        put = editor.call("PUT", f"/v1/admin/apps/{app_id}/widget", json=look, csrf=False)
        assert _code(put, 403) == "csrf_failed"
        # An editor may.
        saved = _ok(editor.call("PUT", f"/v1/admin/apps/{app_id}/widget", json={**look, "greeting": "  "}))
        assert saved == {
            "title": "Parcel help",
            "greeting": None,  # blank: the widget's default
            "color": "#aa3300",
            "position": "left",
            "placeholder": None,
        }
        assert _ok(viewer.call("GET", f"/v1/admin/apps/{app_id}/widget")) == saved
        bad = editor.call("PUT", f"/v1/admin/apps/{app_id}/widget", json={"color": "red;}"})
        assert _code(bad, 400) == "invalid_color"
        assert "hex colour" in bad.json()["error"]["message"]
        assert _code(editor.call("PUT", f"/v1/admin/apps/{app_id}/widget", json={"position": "top"}), 400)
        assert _code(editor.call("PUT", f"/v1/admin/apps/{app_id}/widget", json={"font": "x"}), 400)
        # The audit log is written by metering, a moment later.
        events = poll(
            lambda: _ok(
                api.admin.get("/v1/admin/audit", params={"app_id": app_id, "action": "app.widget_changed"})
            ),
            lambda page: bool(page["events"]),
            what="the widget change in the audit log",
        )
        assert [e["actor"] for e in events["events"]] == [editor.operator["operator_id"]]
        made = _ok(editor.call("POST", f"/v1/admin/apps/{app_id}/keys", json={"name": "by editor"}))
        _ok(editor.call("DELETE", f"/v1/admin/keys/{made['key_id']}"))

        # The widget's own read: a key with `chat`, from an origin it allows, with CORS (from a
        # client without the console's cookie, as a visitor's browser).
        origin = "http://127.0.0.1:45123"
        key = api.create_key(app_id, kind="publishable", allowed_origins=[origin], rate_limit_rpm=1)["key"]
        config = public.get("/v1/widget/config", headers={**api.auth(key), "Origin": origin})
        # The look as saved, and whether to offer a person (never where its e-mail goes).
        assert _ok(config) == {**saved, "handoff": {"enabled": False, "ask_contact": "optional"}}
        assert config.headers["access-control-allow-origin"] == origin
        preflight = public.options(
            "/v1/widget/config",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code in (200, 204), preflight.text
        elsewhere = public.get("/v1/widget/config", headers={**api.auth(key), "Origin": "http://127.0.0.1:1"})
        assert _code(elsewhere, 403) == "origin_not_allowed"
        assert "access-control-allow-origin" not in elsewhere.headers
        assert _code(public.get("/v1/widget/config", headers=api.auth(key)), 403) == "origin_required"
        assert _code(public.get("/v1/widget/config", headers={"Origin": origin}), 401) == "missing_api_key"
        forged = key[:-4] + "AAAA"
        assert _code(public.get("/v1/widget/config", headers={**api.auth(forged), "Origin": origin}), 401)
        reader = api.create_key(app_id, scopes=["files:read"])["key"]
        assert _code(public.get("/v1/widget/config", headers=api.auth(reader)), 403) == "insufficient_scope"
        # Its own rate-limit bucket: loading the widget does not use up the visitor's one question.
        again = public.get("/v1/widget/config", headers={**api.auth(key), "Origin": origin})
        assert _code(again, 429) == "rate_limited"
        asked = public.post(
            "/v1/chat", headers={**api.auth(key), "Origin": origin}, json={"message": "Hello?"}
        )
        assert asked.status_code == 200, asked.text

        # The preview page alone may be framed, and by the console only.
        preview = editor.call("GET", f"/console/apps/{app_id}/widget/preview", params={"title": "<b>x</b>"})
        assert preview.status_code == 200
        assert "frame-ancestors 'self'" in preview.headers["content-security-policy"]
        assert preview.headers["x-frame-options"] == "SAMEORIGIN"
        assert 'data-title="&lt;b&gt;x&lt;/b&gt;"' in preview.text
        # A viewer sees the look, with nothing to save and no keys; the Keys page is not theirs.
        viewed = viewer.call("GET", f"/console/apps/{app_id}/widget")
        assert viewed.status_code == 200
        assert "Parcel help" in viewed.text
        assert "Save widget settings" not in viewed.text
        assert viewer.call("GET", f"/console/apps/{app_id}/keys").status_code == 403
        keys_page = editor.call("GET", f"/console/apps/{app_id}/keys")
        assert keys_page.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in keys_page.headers["content-security-policy"]
    finally:
        viewer.close()
        editor.close()
        public.close()


def _create_key(page: Page, name: str, *, kind: str, origins: str = "") -> None:
    form = page.locator("#create-key")
    form.get_by_label("Name").fill(name)
    form.get_by_label("Kind").select_option(kind)
    form.get_by_label("Allowed origins, one per line").fill(origins)
    form.get_by_role("button", name="Create key").click()


def test_keys_and_widget_pages_in_the_browser(api: Api) -> None:
    ensure_owner(api)
    app_id = api.create_app(_unique("console-keys"))
    owner = add_operator(api, f"{_unique('keys-owner')}@obdal.test", {app_id: "owner"})
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    with chromium() as browser:
        context = browser.new_context(
            permissions=["clipboard-read", "clipboard-write"], viewport={"width": 1400, "height": 900}
        )
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())  # the confirmations, as the operator would
        browser_sign_in(page, api.url, owner["email"])
        page.goto(f"{api.url}/console/apps/{app_id}/keys")
        expect(page.get_by_role("heading", level=1)).to_have_text("Keys")
        box = page.locator("#new-secret")

        # A publishable key may only chat: the other scopes are not offered.
        page.get_by_label("Kind").select_option("publishable")
        expect(page.get_by_role("checkbox", name="files:read")).to_be_disabled()
        expect(page.get_by_role("checkbox", name="chat")).to_be_checked()
        proof = page.get_by_role("checkbox", name="Ask each visitor's browser for proof of work")
        expect(proof).to_be_enabled()
        page.get_by_label("Kind").select_option("secret")
        expect(proof).to_be_disabled()  # a secret key is the app's own server
        page.get_by_label("Kind").select_option("publishable")

        # An origin the API refuses: its own words, next to the field, and no key.
        _create_key(page, "Shop widget", kind="publishable", origins=f"{origin}/shop")
        expect(page.locator("#create-error")).to_have_text(
            f"origin '{origin}/shop' must be scheme://host[:port] only"
        )
        origins_field = page.get_by_label("Allowed origins, one per line")
        expect(origins_field).to_have_attribute("aria-invalid", "true")
        expect(origins_field).to_be_focused()
        expect(box).to_be_hidden()

        # Then right: the secret once, highlighted, with its warning and a Copy button.
        _create_key(page, "Shop widget", kind="publishable", origins=origin)
        expect(box).to_be_visible()
        expect(box).to_contain_text("it will not be shown again")
        secret = page.locator("#secret-value").inner_text()
        assert _SECRET.match(secret), secret
        box.get_by_role("button", name="Copy key").click()
        expect(box.get_by_role("button", name="Copied")).to_be_visible()
        assert _clipboard(page) == secret
        expect(page.locator("#new-snippet-code")).to_have_text(
            f'<script src="{api.url}/widget.js" data-key="{secret}" async></script>'
        )
        _create_key(page, "Old server", kind="secret")
        expect(page.locator("#secret-value")).to_have_text(re.compile(r"^obd_sk_"))
        first_server_secret = page.locator("#secret-value").inner_text()
        box.get_by_role("link", name="Done: show the list").click()
        expect(box).to_be_hidden()
        html = page.content()  # the secrets are never rendered again
        assert secret not in html
        assert first_server_secret not in html

        shop = _row(page, "Shop widget")
        expect(shop.get_by_role("cell")).to_have_text(
            [
                "publishable",
                "chat",
                origin,
                re.compile(r"the default rate limit\s+no token budget\s+never expires"),
                "active",
                "never",
                re.compile("Manage"),
            ]
        )
        # Edit: an origin refused in that key's own form, then a rate limit that sticks.
        shop.get_by_text("Manage").click()
        shop.get_by_label("Allowed origins, one per line").fill(f"{origin}\nftp://nope")
        shop.get_by_role("button", name="Save changes").click()
        expect(shop.get_by_role("alert").first).to_contain_text("ftp://nope")
        shop.get_by_label("Allowed origins, one per line").fill(origin)
        shop.get_by_label("Rate limit, requests per minute (empty: the default)").fill("30")
        shop.get_by_role("button", name="Save changes").click()
        expect(_row(page, "Shop widget").get_by_role("cell").nth(3)).to_contain_text("30 requests a minute")
        shop = _row(page, "Shop widget")
        shop.get_by_text("Manage").click()
        shop.get_by_role("checkbox", name=re.compile("proof of work")).check()
        shop.get_by_role("button", name="Save changes").click()
        expect(_row(page, "Shop widget").get_by_role("cell").nth(3)).to_contain_text("asks for proof of work")
        listed = api.admin.get(f"/v1/admin/apps/{app_id}/keys").json()["keys"]
        assert [k["proof_of_work"] for k in listed if k["name"] == "Shop widget"] == [True]

        # Rotate with a grace period (the new secret shown once), then revoke.
        server = _row(page, "Old server")
        server.get_by_text("Manage").click()
        expect(server.get_by_role("checkbox", name="sessions:write")).to_be_checked()
        server.get_by_label("The old secret keeps working for").select_option(label="1 day")
        server.get_by_role("button", name="Rotate").click()
        expect(box).to_be_visible()
        rotated = page.locator("#secret-value").inner_text()
        assert rotated.startswith("obd_sk_")
        assert rotated != first_server_secret
        assert api.http.get("/v1/usage", headers=api.auth(first_server_secret)).status_code == 200  # grace
        page.reload()
        expect(_row(page, "Old server").locator(".badge")).to_have_text("rotated")
        expect(_row(page, "Old server")).to_contain_text("old secret works until")
        _row(page, "Old server").get_by_text("Manage").click()
        assert page_violations(page) == []
        screenshot(page, "keys")
        _row(page, "Old server").get_by_role("button", name="Revoke Old server").click()
        expect(_row(page, "Old server").locator(".badge")).to_have_text("revoked")
        assert api.http.get("/v1/usage", headers=api.auth(rotated)).status_code == 401  # at once

        # The widget's look: the preview follows the form; Save makes it the app's.
        page.goto(f"{api.url}/console/apps/{app_id}/widget")
        preview = page.frame_locator("#widget-preview")
        expect(preview.get_by_role("dialog", name="Ask us anything")).to_be_visible()
        page.get_by_label("Title").fill("Zorblax help")
        page.get_by_label("Greeting").fill("Ask about parcels & <b>returns</b>.")
        page.get_by_label("Colour").fill("#aa3300")
        page.get_by_label("Position").select_option("left")
        expect(preview.get_by_role("dialog", name="Zorblax help")).to_be_visible()
        expect(preview.get_by_text("Ask about parcels & <b>returns</b>.")).to_be_visible()
        launcher = preview.get_by_role("button", name="Close chat: Zorblax help")
        expect(launcher).to_have_css("background-color", "rgb(170, 51, 0)")
        frame_x = (page.locator("#widget-preview").bounding_box() or {"x": 0})["x"]
        assert (launcher.bounding_box() or {"x": 999})["x"] - frame_x < 100  # bottom left
        page.get_by_role("button", name="Save widget settings").click()
        expect(page.get_by_role("status").filter(has_text="Saved")).to_be_visible()
        expect(page.get_by_label("Title")).to_have_value("Zorblax help")  # the form keeps what was saved
        page.reload()
        expect(page.get_by_label("Title")).to_have_value("Zorblax help")
        expect(page.get_by_label("Position")).to_have_value("left")
        expect(preview.get_by_role("dialog", name="Zorblax help")).to_be_visible()
        look = _ok(api.admin.get(f"/v1/admin/apps/{app_id}/widget"))
        assert (look["title"], look["color"], look["position"]) == ("Zorblax help", "#aa3300", "left")

        # The tag: the chosen key, completed by pasting the key itself, then copied.
        snippet = page.locator("#snippet")
        expect(snippet).to_contain_text('data-key="obd_pk_')
        expect(snippet).to_contain_text("_…")
        page.get_by_label("The key itself").fill(secret[:-1] + "!")
        expect(page.locator("#snippet-note")).to_have_text("That is not one of this app's publishable keys.")
        page.get_by_label("The key itself").fill(secret)
        expect(page.locator("#snippet-note")).to_have_text("")
        tag = f'<script src="{api.url}/widget.js" data-key="{secret}" async></script>'
        expect(snippet).to_have_text(tag)
        page.get_by_role("button", name="Copy the tag").click()
        assert _clipboard(page) == tag
        assert page_violations(page) == []
        screenshot(page, "widget")

        # The widget's log: focusable, so a long conversation scrolls by keyboard (axe's
        # scrollable-region-focusable). The preview answers locally, so it fills the log fast.
        page.goto(f"{api.url}/console/apps/{app_id}/widget/preview")
        question = page.get_by_role("textbox", name="Your question")
        for n in range(8):
            question.fill(f"Question {n}, long enough to take a line or two of the panel")
            question.press("Enter")
        log = page.get_by_role("log", name="Conversation")
        expect(log.locator(".msg.user")).to_have_count(8)
        assert log.evaluate("e => e.scrollHeight > e.clientHeight")
        assert serious_violations(page) == []
        log.focus()
        expect(log).to_be_focused()

        # On the customer's site: the copied tag, and the look set in the console.
        site = Site(
            f"<!doctype html><html lang='en'><title>Shop</title><body><h1>Shop</h1>{tag}</body></html>",
            port=port,
        )
        try:
            page.goto(site.origin)
            page.get_by_role("button", name="Open chat: Zorblax help").click()
            expect(page.get_by_role("dialog", name="Zorblax help")).to_be_visible()
            expect(page.get_by_text("Ask about parcels & <b>returns</b>.")).to_be_visible()
            expect(page.get_by_role("button", name="Close chat: Zorblax help")).to_have_css(
                "background-color", "rgb(170, 51, 0)"
            )
        finally:
            site.close()
        # A data-* attribute on the page still wins over the app's setting.
        own = tag.replace(" async>", ' data-title="Our own title" async>')
        site = Site(f"<!doctype html><html lang='en'><title>Shop</title><body>{own}</body></html>", port=port)
        try:
            page.goto(site.origin)
            expect(page.get_by_role("button", name="Open chat: Our own title")).to_have_css(
                "background-color", "rgb(170, 51, 0)"
            )
        finally:
            site.close()
        context.close()
