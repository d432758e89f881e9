"""The console's Webhooks pages in Debian Chromium, against the shared stack and a real receiver on
loopback that verifies every request with the ``standardwebhooks`` library (tests.webhook_receiver):
an editor adds an endpoint by keyboard, sees its secret once and copies it, a document becoming
ready is delivered and shows in the log, a replay sends the same webhook-id again, the secret is
rotated, the endpoint disabled, enabled and deleted; the log pages older deliveries and filters by
state. Plus what must never happen: a refused address without its reason or losing what was
typed, a viewer managing webhooks (the API's 403 shown, not a crash), a description run as script."""

from __future__ import annotations

import gzip
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Dialog, Page, expect

from tests.api import Api, poll
from tests.browser import POLICY
from tests.console import (
    OWNER_EMAIL,
    Console,
    accepting_dialogs,
    add_operator,
    browser_sign_in,
    page_violations,
    screenshot,
    sign_in,
)
from tests.webhook_receiver import Receiver

HOSTILE = "<script>alert(1)</script> CRM <img src=x onerror=alert(2)>"
# The events the form offers before file.ready, in HookEventType's order, then file.ready.
EVENTS = (
    "conversation.started",
    "message.answered",
    "message.declined",
    "feedback.created",
    "handoff.requested",
    "handoff.resolved",
    "message.received",
    "file.ready",
)
DELIVERY_MS = 20_000
PAGE_BUDGET_GZ = 20 * 1024  # the page, its stylesheet and scripts, gzipped (docs/console.md#speed)
DASH = "\u2013"  # what the pages show for a time that is not (an en dash)


def _email(what: str) -> str:
    return f"{what}-{uuid.uuid4().hex[:8]}@obdal.test"


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    made = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    yield made
    made.close()


def _page(context: BrowserContext, api: Api, email: str) -> tuple[Page, list[Dialog]]:
    """A page signed in as ``email``, and the dialogs it opened (each accepted: confirms say yes)."""
    page = context.new_page()
    dialogs = accepting_dialogs(page)
    browser_sign_in(page, api.url, email)
    return page, dialogs


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _endpoints(console: Console, app_id: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = _ok(console.call("GET", "/v1/webhooks", app=app_id))["webhooks"]
    return listed


def _deliveries(console: Console, app_id: str, endpoint_id: str, **params: Any) -> dict[str, Any]:
    found: dict[str, Any] = _ok(
        console.call("GET", f"/v1/webhooks/{endpoint_id}/deliveries", app=app_id, params=params)
    )
    return found


def test_an_editor_adds_an_endpoint_by_keyboard_sees_deliveries_replays_rotates_and_deletes_it(
    api: Api, console_owner: str, context: BrowserContext
) -> None:
    app_id, key = api.new_tenant("webhooks console")
    editor_email = _email("webhooks-editor")
    add_operator(api, editor_email, {app_id: "editor"})
    editor = sign_in(api, editor_email)
    page, dialogs = _page(context, api, editor_email)
    with Receiver() as receiver:
        page.goto(f"{api.url}/console/apps/{app_id}/documents")
        page.get_by_role("navigation", name="App").get_by_role("link", name="Webhooks").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Webhooks")
        expect(page.get_by_text("No endpoints yet.")).to_be_visible()

        # Keyboard alone: the skip link, then the form's fields in order.
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
        page.keyboard.press("Enter")
        page.keyboard.press("Tab")
        expect(page.get_by_label("URL")).to_be_focused()
        page.keyboard.type(receiver.url)
        for event in EVENTS:
            page.keyboard.press("Tab")
            expect(page.get_by_label(event)).to_be_focused()
        page.keyboard.press("Space")
        expect(page.get_by_label("file.ready")).to_be_checked()
        _tab_to(page, page.get_by_label("Description"))
        page.keyboard.type(HOSTILE)
        page.keyboard.press("Tab")
        expect(page.get_by_role("button", name="Add endpoint")).to_be_focused()
        page.keyboard.press("Enter")

        # The secret, once, in the focused box, with a copy button and how to verify it.
        box = page.locator("#new-secret")
        expect(box).to_be_visible()
        expect(box).to_be_focused()
        expect(box).to_contain_text(f"Added {receiver.url}.")
        expect(box).to_contain_text("it will not be shown again")
        expect(box).to_contain_text("standardwebhooks")
        secret = page.locator("#secret-value").inner_text()
        assert re.fullmatch(r"whsec_[A-Za-z0-9+/=]{32}", secret), secret
        receiver.secret = secret
        box.get_by_role("button", name="Copy secret").click()
        expect(box.get_by_role("button", name="Copied")).to_be_visible()
        assert page.evaluate("navigator.clipboard.readText()") == secret
        expect(page.get_by_label("URL")).to_have_value("")  # the form is ready for another
        (endpoint,) = _endpoints(editor, app_id)
        assert (endpoint["url"], endpoint["events"], endpoint["description"]) == (
            receiver.url,
            ["file.ready"],
            HOSTILE,
        )
        assert "secret" not in endpoint

        # Never again: the list holds no secret, and the description is text.
        box.get_by_role("link", name="Done: show the list").click()
        expect(box).to_be_hidden()
        assert secret not in page.content()
        row = page.locator("[data-webhooks] tbody tr")
        expect(row).to_have_count(1)
        expect(row.get_by_role("rowheader")).to_contain_text(receiver.url)
        expect(row.locator("[data-description]")).to_have_text(HOSTILE)
        assert page.locator("main script, main img").count() == 0
        expect(row.locator("td").nth(0)).to_have_text("file.ready")
        expect(row.locator("[data-state]")).to_have_text("enabled")
        expect(row.locator("td").nth(3)).to_have_text("never")

        # A document becomes ready: the receiver verifies the delivery with the secret shown.
        file_id = api.index(key, "policy.md", POLICY)
        first = receiver.wait("file.ready")[0]
        assert first.verified
        assert first.data["file_id"] == file_id
        poll(
            lambda: _endpoints(editor, app_id)[0],
            lambda e: e["last_success_at"] is not None,
            what="the endpoint's last success",
        )
        page.reload()
        expect(row.locator("td").nth(3)).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d UTC$"))
        expect(row.locator("td").nth(2)).to_have_text(DASH)
        assert page_violations(page) == []
        screenshot(page, "webhooks")
        assert _weight(page) < PAGE_BUDGET_GZ

        # Its log: the event, its webhook-id, delivered, the attempt's status code and latency.
        row.get_by_role("link", name=receiver.url).click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Webhook endpoint")
        expect(page.locator("[data-endpoint] [data-description]")).to_have_text(HOSTILE)
        delivery = page.locator("[data-deliveries] tbody tr")
        expect(delivery).to_have_count(1)
        expect(delivery.get_by_role("rowheader")).to_have_text("file.ready")
        expect(delivery.locator("code")).to_have_text(first.msg_id)
        expect(delivery.locator("[data-badge]")).to_have_text("delivered")
        attempts = delivery.locator("ol.attempts li")
        expect(attempts).to_have_count(1)
        expect(attempts).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC: HTTP 204 in \d+ ms$"))
        expect(delivery.locator("[data-next]")).to_have_text(DASH)
        assert page.locator("main script, main img").count() == 0

        # Replay: the same webhook-id again, and the row follows it to its second attempt.
        delivery.get_by_role("button", name="Replay").click()
        expect(page.get_by_role("status")).to_contain_text(
            re.compile(
                rf"^(Sent file\.ready \({re.escape(first.msg_id)}\) again, with the same webhook-id"
                rf"|file\.ready \({re.escape(first.msg_id)}\): delivered)\.$"
            )
        )
        again = receiver.wait("file.ready", 2)[1]
        assert again.msg_id == first.msg_id
        assert again.verified
        expect(attempts).to_have_count(2, timeout=DELIVERY_MS)
        expect(delivery.locator("[data-badge]")).to_have_text("delivered", timeout=DELIVERY_MS)
        expect(attempts.nth(1)).to_contain_text("HTTP 204 in ")
        expect(page.get_by_role("status")).to_have_text(f"file.ready ({first.msg_id}): delivered.")
        assert page_violations(page) == []
        screenshot(page, "webhook")
        assert _weight(page) < PAGE_BUDGET_GZ

        # The state filter: nothing failed, the one delivered.
        page.get_by_label("State").select_option("failed")
        page.get_by_role("button", name="Show").click()
        expect(page.get_by_text("No failed deliveries.")).to_be_visible()
        expect(delivery).to_have_count(0)
        page.get_by_label("State").select_option("delivered")
        page.get_by_role("button", name="Show").click()
        expect(delivery).to_have_count(1)
        assert "status=delivered" in page.url

        # Rotate: a new secret shown once; the old one signs beside it for 24 hours by default.
        expect(page.get_by_label("The old secret keeps signing for")).to_have_value("86400")
        page.get_by_role("button", name="Rotate secret").click()
        expect(box).to_be_focused()
        expect(box).to_contain_text(
            f"A new secret for {receiver.url}. The old one keeps signing beside it until "
        )
        rotated = page.locator("#secret-value").inner_text()
        assert rotated.startswith("whsec_")
        assert rotated != secret
        shown = _ok(editor.call("GET", f"/v1/webhooks/{endpoint['endpoint_id']}", app=app_id))
        assert len(shown["secrets"]) == 2
        assert "secret" not in shown

        # Disable, then enable again; then delete (confirmed), back to the list.
        page.get_by_role("button", name="Disable").click()
        expect(page.locator("[data-endpoint] .badge")).to_have_text("disabled")
        assert _endpoints(editor, app_id)[0]["enabled"] is False
        page.get_by_role("button", name="Enable").click()
        expect(page.locator("[data-endpoint] .badge")).to_have_text("enabled")
        assert _endpoints(editor, app_id)[0]["enabled"] is True
        page.get_by_role("button", name="Delete").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Webhooks")
        expect(page.get_by_text("No endpoints yet.")).to_be_visible()
        assert _endpoints(editor, app_id) == []
        assert [d.type for d in dialogs] == ["confirm", "confirm"]  # never an injected alert
        assert dialogs[0].message.startswith(f"Rotate the signing secret of {receiver.url}?")
        assert dialogs[1].message == (
            f"Delete the endpoint {receiver.url} and its delivery log? It gets no more events."
        )
    page.close()
    editor.close()


def _weight(page: Page) -> int:
    """Gzipped bytes of the page's HTML and the console files it loads, as a first visit fetches them."""
    html = page.request.get(page.url).body()
    assets = set(re.findall(rb'(?:href|src)="(/console/static/[^"]+)"', html))
    assets.add(b"/console/static/webhooks.js")
    origin = page.url.split("/console", 1)[0]
    return len(gzip.compress(html)) + sum(
        len(gzip.compress(page.request.get(origin + asset.decode()).body())) for asset in assets
    )


def _tab_to(page: Page, target: Any, *, most: int = 40) -> None:
    for _ in range(most):
        page.keyboard.press("Tab")
        if target.evaluate("e => document.activeElement === e"):
            return
    raise AssertionError(f"Tab never reached {target}")


def test_the_log_pages_older_deliveries_newest_first(
    api: Api, console_owner: str, context: BrowserContext
) -> None:
    app_id = api.create_app("webhooks paging")
    owner = sign_in(api, OWNER_EMAIL)
    with Receiver() as receiver:
        created = _ok(
            owner.call(
                "POST", "/v1/webhooks", app=app_id, json={"url": receiver.url, "events": ["key.revoked"]}
            ),
            201,
        )
        receiver.secret = created["secret"]
        endpoint_id = created["endpoint_id"]
        # 27 keys revoked: more than a page of the log (25).
        for n in range(27):
            made = api.create_key(app_id, name=f"revoked {n}")
            assert api.admin.delete(f"/v1/admin/keys/{made['key_id']}").status_code == 200
        receiver.wait("key.revoked", 27)
        logged = poll(
            lambda: _deliveries(owner, app_id, endpoint_id, limit=100)["deliveries"],
            lambda found: len(found) == 27 and all(d["state"] == "delivered" for d in found),
            what="27 deliveries",
        )
        page, _ = _page(context, api, console_owner)
        page.goto(f"{api.url}/console/apps/{app_id}/webhooks/{endpoint_id}")
        ids = page.locator("[data-deliveries] tbody tr code")
        expect(ids).to_have_count(25)
        assert ids.all_inner_texts() == [d["event_id"] for d in logged[:25]]
        expect(page.get_by_role("link", name="Newest")).to_have_count(0)
        page.get_by_role("link", name="Older").click()
        expect(ids).to_have_count(2)
        assert ids.all_inner_texts() == [d["event_id"] for d in logged[25:]]
        expect(page.get_by_role("link", name="Older")).to_have_count(0)
        page.get_by_role("link", name="Newest").click()
        expect(ids).to_have_count(25)
        # The filter stays on the older page.
        page.get_by_label("State").select_option("delivered")
        page.get_by_role("button", name="Show").click()
        page.get_by_role("link", name="Older").click()
        expect(ids).to_have_count(2)
        assert "status=delivered" in page.url
        expect(page.get_by_label("State")).to_have_value("delivered")
        page.close()
    owner.close()


def test_refusals_say_why_and_keep_what_was_typed(
    api: Api, console_owner: str, context: BrowserContext
) -> None:
    app_id = api.create_app("webhooks refused")
    owner = sign_in(api, OWNER_EMAIL)
    refused = owner.call("POST", "/v1/webhooks", app=app_id, json={"url": "http://10.0.0.1/x"})
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "private_address"
    message = refused.json()["error"]["message"]
    page, dialogs = _page(context, api, console_owner)
    page.goto(f"{api.url}/console/apps/{app_id}/webhooks")
    url = page.get_by_label("URL")
    url.fill("http://10.0.0.1/x")
    page.get_by_label("message.declined").check()
    page.get_by_label("Description").fill("Help desk")
    page.get_by_role("button", name="Add endpoint").click()
    alert = page.locator("#add-error")
    expect(alert).to_have_text(f"Obdal does not post to private or internal addresses. {message}")
    expect(alert).to_be_focused()
    expect(alert).to_have_attribute("role", "alert")
    expect(url).to_have_attribute("aria-invalid", "true")
    expect(url).to_have_value("http://10.0.0.1/x")
    expect(page.get_by_label("message.declined")).to_be_checked()
    expect(page.get_by_label("Description")).to_have_value("Help desk")
    expect(page.get_by_text("No endpoints yet.")).to_be_visible()
    assert page_violations(page) == []

    # Another scheme than http(s): its own reason, in the API's words.
    url.fill("ftp://127.0.0.1/hook")
    page.get_by_role("button", name="Add endpoint").click()
    expect(alert).to_contain_text("That kind of address is not allowed.")
    expect(alert).to_contain_text("url must be https or http, not ftp")

    # The app full: 409, said in words; nothing was added by the refusals.
    with Receiver() as receiver:
        most = 0
        while True:
            made = owner.call("POST", "/v1/webhooks", app=app_id, json={"url": receiver.url})
            if made.status_code == 409:
                break
            assert made.status_code == 201, made.text
            most += 1
            assert most <= 100
        assert made.json()["error"]["code"] == "too_many_webhooks"
        url.fill(receiver.url)
        page.get_by_role("button", name="Add endpoint").click()
        full = made.json()["error"]["message"]
        expect(alert).to_have_text(f"This app has as many endpoints as it may have: delete one first. {full}")
        expect(url).not_to_have_attribute("aria-invalid", "true")
        assert len(_endpoints(owner, app_id)) == most
    assert dialogs == []
    page.close()
    owner.close()


def test_a_viewer_is_told_they_may_not_manage_webhooks_and_the_api_refuses_them(
    api: Api, console_owner: str, context: BrowserContext
) -> None:
    app_id = api.create_app("webhooks viewer")
    owner = sign_in(api, OWNER_EMAIL)
    viewer_email = _email("webhooks-viewer")
    add_operator(api, viewer_email, {app_id: "viewer"})
    viewer = sign_in(api, viewer_email)
    with Receiver() as receiver:
        endpoint = _ok(owner.call("POST", "/v1/webhooks", app=app_id, json={"url": receiver.url}), 201)
        endpoint_id = endpoint["endpoint_id"]
        refusal = viewer.call("GET", "/v1/webhooks", app=app_id)
        assert refusal.status_code == 403, refusal.text
        assert refusal.json()["error"]["code"] == "role_forbids"
        message = refusal.json()["error"]["message"]

        page, dialogs = _page(context, api, viewer_email)
        page.goto(f"{api.url}/console/apps/{app_id}/documents")
        page.get_by_role("navigation", name="App").get_by_role("link", name="Webhooks").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Webhooks")
        refused = page.locator("[data-refused]")
        expect(refused.get_by_role("heading", name="You may not manage webhooks")).to_be_visible()
        expect(refused).to_contain_text("Your role on webhooks viewer is viewer")
        expect(refused).to_contain_text(f"The API answered: {message}")
        expect(page.locator("form")).to_have_count(0)
        expect(page.get_by_role("table")).to_have_count(0)
        expect(page.get_by_text(receiver.url)).to_have_count(0)
        assert page_violations(page) == []
        # The endpoint's page too: the refusal, not an error page, and no delivery, no control.
        response = page.goto(f"{api.url}/console/apps/{app_id}/webhooks/{endpoint_id}")
        assert response is not None
        assert response.status == 200
        expect(page.locator("[data-refused]")).to_contain_text(message)
        expect(page.get_by_role("button", name="Replay")).to_have_count(0)

        # Made to ask anyway (a form put in the page), the API's 403 is shown where it was asked.
        page.locator("[data-refused]").evaluate(
            """(section, url) => {
                const form = document.createElement("form");
                form.dataset.api = "/v1/webhooks";
                form.dataset.method = "POST";
                const input = document.createElement("input");
                input.name = "url";
                input.value = url;
                input.setAttribute("aria-label", "URL");
                const error = document.createElement("p");
                error.dataset.error = "";
                error.setAttribute("role", "alert");
                const button = document.createElement("button");
                button.type = "submit";
                button.textContent = "Add anyway";
                form.append(input, error, button);
                section.append(form);
            }""",
            receiver.url,
        )
        page.get_by_role("button", name="Add anyway").click()
        expect(page.get_by_role("alert")).to_have_text(message)
        assert dialogs == []
        page.close()

        # Whatever the page shows, the API refuses every webhook route to a viewer.
        for method, path in (
            ("POST", "/v1/webhooks"),
            ("GET", f"/v1/webhooks/{endpoint_id}"),
            ("GET", f"/v1/webhooks/{endpoint_id}/deliveries"),
            ("PATCH", f"/v1/webhooks/{endpoint_id}"),
            ("POST", f"/v1/webhooks/{endpoint_id}/rotate"),
            ("POST", f"/v1/webhooks/{endpoint_id}/deliveries/dlv_{'0' * 32}/replay"),
            ("DELETE", f"/v1/webhooks/{endpoint_id}"),
        ):
            body = (
                {"url": receiver.url}
                if path == "/v1/webhooks"
                else {"enabled": False}
                if method == "PATCH"
                else None
            )
            answer = viewer.call(method, path, app=app_id, json=body)
            assert answer.status_code == 403, (method, path, answer.text)
            assert answer.json()["error"]["code"] == "role_forbids"
        assert [e["endpoint_id"] for e in _endpoints(owner, app_id)] == [endpoint_id]
        assert _endpoints(owner, app_id)[0]["enabled"] is True
    viewer.close()
    owner.close()
