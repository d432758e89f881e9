"""The console's conversations, settings, audit log and operators pages in Debian Chromium, and
the API changes behind them (the audit log's date range, operator changes that are all-or-nothing)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, expect

from tests.api import Api, poll
from tests.browser import POLICY
from tests.console import (
    OWNER_EMAIL,
    PASSWORD,
    accepting_dialogs,
    add_operator,
    browser_sign_in,
    page_violations,
    screenshot,
    sign_in,
)

HOSTILE_TEXT = "<script>alert(1)</script>"
HOSTILE_USER = '<img src=x onerror="alert(2)">'


def _conversation(api: Api, key: str, message: str, user: str) -> str:
    response = api.chat(key, message, user=user)
    assert response.status_code == 200, response.text
    session_id = str(response.json()["session_id"])
    api.wait_session(key, session_id, messages=2)
    return session_id


def _app_with_conversations(api: Api, name: str) -> tuple[str, str, str, str]:
    """A new app holding POLICY and two conversations: ``(app_id, key, grounded, hostile)``."""
    app_id, key = api.new_tenant(name)
    api.index(key, "policy.md", POLICY)
    grounded = _conversation(api, key, "Which courier do you ship with?", "alice")
    hostile = _conversation(api, key, HOSTILE_TEXT, HOSTILE_USER)
    return app_id, key, grounded, hostile


def test_conversations_list_thread_export_and_erasure(api: Api, console_owner: str, browser: Browser) -> None:
    app_id, key, grounded, hostile = _app_with_conversations(api, "console conversations")
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    dialogs = accepting_dialogs(page)
    browser_sign_in(page, api.url, console_owner)
    page.goto(f"{api.url}/console/apps/{app_id}/conversations")
    table = page.get_by_role("table", name="Conversations")
    expect(table.get_by_role("row")).to_have_count(3)  # the header and two conversations
    # The hostile conversation shows its text as text, and runs nothing.
    hostile_row = table.get_by_role("row").filter(has=page.get_by_role("link", name=hostile))
    expect(hostile_row).to_contain_text(HOSTILE_TEXT)
    expect(hostile_row).to_contain_text(HOSTILE_USER)
    assert page.locator("main img").count() == 0
    screenshot(page, "conversations")
    assert page_violations(page) == []
    # Filtered by end user: alice's only.
    page.get_by_label("End user").fill("alice")
    page.get_by_role("button", name="Filter").click()
    expect(table.get_by_role("row")).to_have_count(2)
    expect(table).to_contain_text(grounded)

    # The export link downloads the same conversations, as NDJSON.
    with page.expect_download() as started:
        page.get_by_role("link", name="Export as NDJSON").click()
    lines = [json.loads(line) for line in Path(started.value.path()).read_text().splitlines()]
    assert [line["session_id"] for line in lines] == [grounded]
    assert lines[0]["messages"][0]["content"] == "Which courier do you ship with?"

    # The thread: both turns, the answer's sources and tokens.
    page.get_by_role("link", name=grounded).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Conversation")
    turns = page.locator("ol.thread > li")
    expect(turns).to_have_count(2)
    expect(turns.nth(0)).to_contain_text("Which courier do you ship with?")
    answer = turns.nth(1)
    expect(answer).to_contain_text("Zorblax")
    expect(answer.get_by_role("table", name="Sources")).to_contain_text("policy.md")
    expect(answer).to_contain_text("tokens")
    screenshot(page, "conversation")
    assert page_violations(page) == []

    # Delete it (confirmed): back to the list, and the API no longer has it.
    page.get_by_role("button", name="Delete conversation").click()
    expect(page).to_have_url(f"{api.url}/console/apps/{app_id}/conversations")
    assert [d.type for d in dialogs] == ["confirm"]
    gone = api.http.get(f"/v1/sessions/{grounded}", headers=api.auth(key))
    assert gone.status_code == 404, gone.text

    # Erase the hostile end user from their thread; the confirmation names them.
    page.get_by_role("link", name=hostile).click()
    expect(page.locator("ol.thread > li").first).to_contain_text(HOSTILE_TEXT)
    page.get_by_role("button", name="Erase this end user").click()
    expect(page).to_have_url(f"{api.url}/console/apps/{app_id}/conversations")
    assert HOSTILE_USER in dialogs[-1].message
    assert [d.type for d in dialogs] == ["confirm", "confirm"]  # never an injected alert
    assert api.sessions(key, user=HOSTILE_USER) == []
    expect(page.get_by_text("No conversations in the last 30 days.")).to_be_visible()
    context.close()


def _wait_for_row(page: Page, text: str) -> None:
    """Reload until the audit log shows ``text`` (metering stores events moments after them)."""

    def shown() -> bool:
        page.reload()
        return page.get_by_role("table").filter(has_text=text).count() > 0

    poll(shown, bool, timeout=20, what=f"audit row {text!r}")


def test_settings_save_show_errors_and_appear_in_the_audit_log(
    api: Api, console_owner: str, browser: Browser
) -> None:
    app_id = api.create_app("console settings")
    context = browser.new_context()
    page = context.new_page()
    confirmed = accepting_dialogs(page)
    browser_sign_in(page, api.url, console_owner)
    page.goto(f"{api.url}/console/apps/{app_id}/settings")
    answers = page.locator("section").filter(has=page.get_by_role("heading", name="How the app answers"))
    answers.get_by_label("Model").fill("openai/gpt-console-test")
    answers.get_by_label("Persona").fill("You are Zorblax's friendly helper.")
    answers.get_by_label("Temperature").fill("0.3")
    answers.get_by_label("Longest answer").fill("300")
    answers.get_by_role("button", name="Save settings").click()
    expect(answers.get_by_role("status")).to_have_text("Settings saved.")
    stored = api.admin.get(f"/v1/admin/apps/{app_id}/chat").json()
    assert stored["model"] == "openai/gpt-console-test"
    assert stored["temperature"] == 0.3
    assert stored["max_tokens"] == 300

    # A bad value: the API's refusal, in the form, and nothing stored.
    answers.get_by_label("Temperature").fill("5")
    answers.get_by_role("button", name="Save settings").click()
    expect(answers.get_by_role("alert")).to_contain_text("temperature")
    answers.get_by_label("Temperature").fill("0.3")
    answers.get_by_label("Input price").fill("1.5")
    answers.get_by_role("button", name="Save settings").click()
    expect(answers.get_by_role("alert")).to_contain_text(
        "set both input_cost_per_mtok and output_cost_per_mtok"
    )
    assert api.admin.get(f"/v1/admin/apps/{app_id}/chat").json()["temperature"] == 0.3

    keeping = page.locator("section").filter(has=page.get_by_role("heading", name="How long"))
    keeping.get_by_label("Keep conversations for").fill("45")
    keeping.get_by_role("button", name="Save retention").click()
    expect(keeping.get_by_role("status")).to_have_text("Retention saved.")
    assert api.admin.get(f"/v1/admin/apps/{app_id}/retention").json()["session_ttl_days"] == 45
    page.reload()
    expect(answers.get_by_label("Temperature")).to_have_value("0.3")
    expect(keeping.get_by_label("Keep conversations for")).to_have_value("45")
    screenshot(page, "settings")
    assert page_violations(page) == []
    # Empty keeps conversations forever (null).
    keeping.get_by_label("Keep conversations for").fill("")
    keeping.get_by_role("button", name="Save retention").click()
    expect(keeping.get_by_role("status")).to_have_text("Retention saved.")
    assert api.admin.get(f"/v1/admin/apps/{app_id}/retention").json()["session_ttl_days"] is None

    # Signed-in customers: the identity secret made, shown once, rotated, then turned off.
    identity = page.locator("section").filter(has=page.get_by_role("heading", name="Signed-in customers"))
    expect(identity).to_contain_text("Identity verification is off")
    identity.get_by_role("button", name="Turn on identity verification").click()
    shown = identity.locator("#identity-secret-value")
    expect(shown).to_have_text(re.compile(r"^ids_[0-9a-f]{64}$"))
    expect(identity.locator("#identity-secret")).to_be_focused()
    first = shown.inner_text()
    assert api.admin.get(f"/v1/admin/apps/{app_id}").json()["identity_verification"]["enabled"] is True
    page.reload()
    assert first not in page.content()
    expect(identity).to_contain_text("Identity verification is on since")
    identity.get_by_label("The current secret keeps verifying for").select_option("0")
    identity.get_by_role("button", name="Rotate the identity secret").click()
    expect(shown).to_have_text(re.compile(r"^ids_"))
    assert shown.inner_text() != first
    assert page_violations(page) == []
    page.reload()
    identity.get_by_role("button", name="Turn identity verification off").click()
    expect(identity).to_contain_text("Identity verification is off")
    assert api.admin.get(f"/v1/admin/apps/{app_id}").json()["identity_verification"] == {"enabled": False}
    assert [d.type for d in confirmed] == ["confirm", "confirm"]  # the rotation and the switch-off

    # The audit log names the owner by e-mail, and filters by action and days.
    page.goto(f"{api.url}/console/apps/{app_id}/audit")
    _wait_for_row(page, "retention.changed")
    log = page.get_by_role("table")
    changed = log.get_by_role("row").filter(has_text="app.chat_changed")
    expect(changed).to_have_count(1)
    expect(changed).to_contain_text(OWNER_EMAIL)
    expect(changed).to_contain_text("temperature: 0.3")
    screenshot(page, "audit")
    assert page_violations(page) == []
    page.get_by_label("Action").fill("retention.changed")
    page.get_by_role("button", name="Filter").click()
    expect(log.get_by_role("row")).to_have_count(3)  # the header and both retention changes
    today = datetime.now(UTC).date()
    page.get_by_label("To", exact=True).fill((today - timedelta(days=1)).isoformat())
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("Nothing in the audit log matches these filters.")).to_be_visible()
    context.close()


def test_operators_page_adds_a_viewer_who_may_read_but_not_erase(
    api: Api, console_owner: str, browser: Browser
) -> None:
    app_id, key, grounded, _ = _app_with_conversations(api, "console operators")
    viewer_email = "console-pages-viewer@obdal.test"
    owner_context = browser.new_context()
    page = owner_context.new_page()
    dialogs = accepting_dialogs(page)
    browser_sign_in(page, api.url, console_owner)
    page.goto(f"{api.url}/console/operators")
    add = page.locator("section").filter(has=page.get_by_role("heading", name="Add an operator"))
    add.get_by_label("E-mail").fill(viewer_email)
    add.get_by_label("Name", exact=True).fill("Vera <b>Viewer</b>")
    add.get_by_label("First password").fill(PASSWORD)
    add.get_by_label(re.compile("^App ")).select_option(label="console operators")
    add.get_by_label(re.compile("^Role ")).select_option("viewer")
    add.get_by_role("button", name="Add operator").click()
    row = page.get_by_role("row").filter(has_text=viewer_email)
    expect(row).to_contain_text("console operators: viewer")
    expect(row).to_contain_text("Vera <b>Viewer</b>")
    screenshot(page, "operators")
    assert page_violations(page) == []

    # The viewer, in a browser of their own: reads conversations, sees no owner control, and the
    # API refuses their deletion with a message the page shows.
    viewer_context = browser.new_context()
    viewer = viewer_context.new_page()
    browser_sign_in(viewer, api.url, viewer_email)
    viewer.goto(f"{api.url}/console/apps/{app_id}/conversations/{grounded}")
    expect(viewer.locator("ol.thread > li").nth(1)).to_contain_text("Zorblax")
    expect(viewer.get_by_role("button", name="Delete conversation")).to_have_count(0)
    expect(viewer.get_by_role("button", name="Erase this end user")).to_have_count(0)
    viewer.locator("section").first.evaluate(
        """(section, path) => {
            const button = document.createElement("button");
            button.type = "button";
            button.textContent = "Delete anyway";
            button.dataset.api = path;
            button.dataset.method = "DELETE";
            section.append(button);
        }""",
        f"/v1/sessions/{grounded}",
    )
    viewer.get_by_role("button", name="Delete anyway").click()
    expect(viewer.get_by_role("alert")).to_contain_text("your role on this app (viewer) may not do this")
    assert api.http.get(f"/v1/sessions/{grounded}", headers=api.auth(key)).status_code == 200
    viewer.goto(f"{api.url}/console/apps/{app_id}/settings")
    expect(viewer.get_by_role("button", name="Save settings")).to_have_count(0)
    viewer.goto(f"{api.url}/console/operators")
    expect(viewer.get_by_text("Only owners manage operators.")).to_be_visible()
    expect(viewer.get_by_role("button", name="Add operator")).to_have_count(0)

    # The owner makes them an editor, takes the role back, then removes the account.
    operator_id = _operator(api, viewer_email)["operator_id"]
    row.get_by_text(f"Manage {viewer_email}").click()
    row.locator("select[name=app]").select_option(label="console operators")
    row.locator("select[name=role]").select_option("editor")
    row.get_by_role("button", name="Set role").click()
    expect(page.get_by_role("row").filter(has_text=viewer_email)).to_contain_text("console operators: editor")
    assert _operator(api, viewer_email)["roles"] == {app_id: "editor"}
    page.get_by_role("button", name=f"Take back {viewer_email}'s role on console operators").click()
    expect(page.get_by_role("row").filter(has_text=viewer_email)).to_contain_text("no role on your apps")
    assert _operator(api, viewer_email)["roles"] == {}
    page.get_by_role("row").filter(has_text=viewer_email).get_by_text(f"Manage {viewer_email}").click()
    page.get_by_role("button", name=f"Remove {viewer_email}").click()
    expect(page.get_by_role("row").filter(has_text=viewer_email)).to_have_count(0)
    assert [d.type for d in dialogs] == ["confirm", "confirm"]
    assert operator_id not in {
        o["operator_id"] for o in api.admin.get("/v1/admin/operators").json()["operators"]
    }
    viewer.reload()
    expect(viewer.get_by_role("heading", level=1)).to_have_text("Sign in")
    viewer_context.close()
    owner_context.close()


def _operator(api: Api, email: str) -> dict[str, Any]:
    listed = api.admin.get("/v1/admin/operators").json()["operators"]
    return next(o for o in listed if o["email"] == email)


def test_a_refused_operator_change_changes_nothing(api: Api, console_owner: str) -> None:
    """An app's owner may change roles there but not reset a password: asking for both is refused
    whole, and a too-short password does not leave the role change half-made either."""
    app_id = api.create_app("operator changes")
    add_operator(api, "pages-app-owner@obdal.test", {app_id: "owner"})
    target = add_operator(api, "pages-target@obdal.test", {app_id: "viewer"})
    app_owner = sign_in(api, "pages-app-owner@obdal.test")
    path = f"/v1/admin/operators/{target['operator_id']}"
    refused = app_owner.call("PATCH", path, json={"roles": {app_id: "editor"}, "password": "x" * 20})
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "role_forbids"
    assert _operator(api, "pages-target@obdal.test")["roles"] == {app_id: "viewer"}
    short = api.admin.patch(path, json={"roles": {app_id: "editor"}, "password": "short"})
    assert short.status_code == 400, short.text
    assert _operator(api, "pages-target@obdal.test")["roles"] == {app_id: "viewer"}
    renamed = app_owner.call("PATCH", path, json={"name": "   ", "roles": {app_id: "editor"}})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "pages-target@obdal.test"
    assert renamed.json()["roles"] == {app_id: "editor"}
    app_owner.close()


def test_audit_log_date_range(api: Api, console_owner: str) -> None:
    app_id = api.create_app("audit dates")
    assert (
        api.admin.put(f"/v1/admin/apps/{app_id}/retention", json={"session_ttl_days": 9}).status_code == 200
    )
    today = datetime.now(UTC).date()

    def actions(**params: str) -> list[str]:
        response = api.admin.get("/v1/admin/audit", params={"app_id": app_id, **params})
        assert response.status_code == 200, response.text
        return [e["action"] for e in response.json()["events"]]

    poll(lambda: actions(), lambda found: "retention.changed" in found, what="retention change audited")
    assert "retention.changed" in actions(start_date=today.isoformat(), end_date=today.isoformat())
    assert "retention.changed" in actions(start_date=today.isoformat())
    assert actions(end_date=(today - timedelta(days=1)).isoformat()) == []
    assert (
        actions(
            start_date=(today + timedelta(days=1)).isoformat(),
            end_date=(today + timedelta(days=2)).isoformat(),
        )
        == []
    )
    bad = api.admin.get("/v1/admin/audit", params={"app_id": app_id, "start_date": "yesterday"})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_date"
    # A viewer of the app reads its log, dates and all.
    add_operator(api, "pages-audit-viewer@obdal.test", {app_id: "viewer"})
    viewer = sign_in(api, "pages-audit-viewer@obdal.test")
    seen = viewer.call("GET", "/v1/admin/audit", params={"app_id": app_id, "start_date": today.isoformat()})
    assert seen.status_code == 200, seen.text
    assert "retention.changed" in [e["action"] for e in seen.json()["events"]]
    viewer.close()
