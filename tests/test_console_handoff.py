"""The console's side of handing a conversation to a person (docs/handoff.md), in Debian Chromium
against the shared stack: a conversation handed off through the API stands out in the list, its
page shows the handoff and the customer's contact, a person replies by keyboard (the reply is in
``GET /v1/sessions/{id}`` with its name) and marks it resolved (owners and editors may); the "Talk
to a person" settings save and reload; a viewer gets no reply form and the API's refusal in words;
whatever a customer or a person typed is shown as text, never run."""

from __future__ import annotations

import re
import uuid
from typing import Any

from playwright.sync_api import Browser, Page, expect

from tests.api import Api, poll
from tests.console import (
    accepting_dialogs,
    add_operator,
    browser_sign_in,
    page_violations,
    screenshot,
    sign_in,
)

REASON = "<script>alert(1)</script> The answer about my <b>order</b> did not help"
CONTACT = {"email": "ana+orders@example.com", "name": 'Ana <img src=x onerror="alert(2)">'}
REPLY = "Hi Ana, I've refunded the order. <script>alert(3)</script>"
HOSTILE_NAME = 'Sam <img src=x onerror="alert(4)">'
FOLLOW_UP = "Thank you, and <i>sorry</i> for the wait."


def _email(what: str) -> str:
    return f"{what}-{uuid.uuid4().hex[:8]}@obdal.test"


def _ok(response: Any, *statuses: int) -> Any:
    assert response.status_code in (statuses or (200,)), response.text
    return response.json()


def _conversation(api: Api, key: str, message: str, **body: Any) -> str:
    session_id = str(_ok(api.chat(key, message, **body))["session_id"])
    api.wait_session(key, session_id, messages=2)
    return session_id


def _hand_off(api: Api, key: str, session_id: str, **body: Any) -> dict[str, Any]:
    handoff: dict[str, Any] = _ok(
        api.http.post(f"/v1/sessions/{session_id}/handoff", headers=api.auth(key), json=body), 200, 201
    )
    assert handoff["status"] == "requested", handoff
    return handoff


def _session(api: Api, key: str, session_id: str) -> dict[str, Any]:
    session: dict[str, Any] = _ok(api.http.get(f"/v1/sessions/{session_id}", headers=api.auth(key)))
    return session


def _handed_off_app(api: Api, name: str) -> tuple[str, str, str]:
    """A new app with a conversation handed to a person, asked once more while it waits:
    ``(app_id, key, session_id)``."""
    app_id, key = api.new_tenant(name)
    session_id = _conversation(api, key, "Where is my order 1234?", user="ana")
    _hand_off(api, key, session_id, reason=REASON, contact=CONTACT)
    quiet = _ok(api.chat(key, "Is anyone there?", session_id=session_id, user="ana"))
    assert quiet["content"] == "", quiet
    api.wait_session(key, session_id, messages=4)
    return app_id, key, session_id


def _no_markup_ran(page: Page) -> None:
    """What customers and people typed is text: no element of theirs in the page's main part."""
    for tag in ("script", "img", "b", "i"):
        expect(page.locator(f"main {tag}")).to_have_count(0)


def test_a_person_replies_to_a_handed_off_conversation_and_marks_it_resolved(
    api: Api, console_owner: str, browser: Browser
) -> None:
    app_id, key, session_id = _handed_off_app(api, "console handoff")
    other = _conversation(api, key, "Do you ship to Norway?", user="bo")
    # An owner of the app (editors may too: test_an_editor_may_reply_and_resolve), named Sam.
    person_email = _email("handoff-person")
    person = add_operator(api, person_email, {app_id: "owner"})
    _ok(api.admin.patch(f"/v1/admin/operators/{person['operator_id']}", json={"name": "Sam"}))

    context = browser.new_context()
    page = context.new_page()
    dialogs = accepting_dialogs(page)
    browser_sign_in(page, api.url, person_email)

    # The list: the conversation waiting for a person stands out, the other has no badge.
    page.goto(f"{api.url}/console/apps/{app_id}/conversations")
    table = page.get_by_role("table", name=re.compile("^Conversations"))
    waiting = table.get_by_role("row").filter(has=page.get_by_role("link", name=session_id))
    expect(waiting).to_contain_text("Waiting for a person")
    plain = table.get_by_role("row").filter(has=page.get_by_role("link", name=other))
    expect(plain).not_to_contain_text("Waiting for a person")
    expect(plain).not_to_contain_text("Handed off")
    assert page_violations(page) == []

    # The conversation: the panel with the reason and the contact, all as text.
    waiting.get_by_role("link", name=session_id).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Conversation")
    panel = page.get_by_role("region", name="Handed to a person")
    expect(panel).to_contain_text("Waiting for a person")
    expect(panel).to_contain_text(REASON)
    expect(panel).to_contain_text(CONTACT["name"])
    mail = panel.get_by_role("link", name=CONTACT["email"])
    expect(mail).to_have_attribute("href", "mailto:ana+orders@example.com")
    _no_markup_ran(page)
    # The question asked while it waited is not an empty answer.
    thread = page.locator("ol.thread > li")
    expect(thread).to_have_count(4)
    expect(thread.nth(3)).to_contain_text("Waiting for a person: the assistant did not answer.")
    assert page_violations(page) == []

    # Keyboard alone: from "Mark resolved", Tab to the reply, to its signature (the operator's
    # name), to "Send reply", and Enter.
    resolve = panel.get_by_role("button", name="Mark resolved")
    resolve.focus()
    page.keyboard.press("Tab")
    box = page.get_by_role("textbox", name="Your reply")
    expect(box).to_be_focused()
    page.keyboard.type(REPLY)
    page.keyboard.press("Tab")
    signed = page.get_by_role("textbox", name=re.compile("^Signed as"))
    expect(signed).to_be_focused()
    expect(signed).to_have_value("Sam")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Send reply")).to_be_focused()
    page.keyboard.press("Enter")
    reply_form = page.get_by_role("region", name="Reply as a person")
    expect(reply_form.get_by_role("status")).to_have_text("Reply sent as Sam.")
    expect(box).to_be_focused()
    expect(box).to_have_value("")
    expect(thread).to_have_count(5)
    expect(thread.nth(4)).to_contain_text(REPLY)
    expect(thread.nth(4)).to_contain_text("Sam")
    agent = [m for m in _session(api, key, session_id)["messages"] if m["role"] == "agent"]
    assert [(m["content"], m["name"]) for m in agent] == [(REPLY, "Sam")]
    _no_markup_ran(page)
    screenshot(page, "handoff")
    assert page_violations(page) == []

    # A second reply signed with a name that is markup; both stay text when the page is drawn anew.
    box.fill(FOLLOW_UP)
    signed.fill(HOSTILE_NAME)
    reply_form.get_by_role("button", name="Send reply").click()
    expect(reply_form.get_by_role("status")).to_have_text(f"Reply sent as {HOSTILE_NAME}.")
    page.reload()
    expect(thread).to_have_count(6)
    expect(thread.nth(4)).to_contain_text(REPLY)
    expect(thread.nth(5)).to_contain_text(FOLLOW_UP)
    expect(thread.nth(5).locator("strong")).to_have_text(HOSTILE_NAME)
    _no_markup_ran(page)

    # A second tab left open on the waiting conversation, then "Mark resolved" in the first.
    stale = context.new_page()
    stale_dialogs = accepting_dialogs(stale)
    stale.goto(page.url)
    panel.get_by_role("button", name="Mark resolved").click()
    expect(panel).to_contain_text("Handed off, resolved")
    expect(panel.get_by_role("button", name="Mark resolved")).to_have_count(0)
    handoff = _session(api, key, session_id)["handoff"]
    assert handoff["status"] == "resolved", handoff
    assert handoff["resolved_at"] is not None
    # The stale tab's click is refused by the API (nothing is open), in the API's words.
    refused = api.http.post(f"/v1/sessions/{session_id}/handoff/resolve", headers=api.auth(key))
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "handoff_not_open"
    stale_panel = stale.get_by_role("region", name="Handed to a person")
    stale_panel.get_by_role("button", name="Mark resolved").click()
    expect(stale_panel.get_by_role("alert")).to_have_text(refused.json()["error"]["message"])
    expect(stale_panel.get_by_role("alert")).to_be_focused()

    # The list now marks it, quieter.
    page.goto(f"{api.url}/console/apps/{app_id}/conversations")
    expect(waiting).to_contain_text("Handed off, resolved")
    expect(waiting).not_to_contain_text("Waiting for a person")

    # The overview counts the handoff (metering's daily figures follow within moments).
    def counted() -> str:
        page.goto(f"{api.url}/console/apps/{app_id}")
        figure = page.locator(".figures div").filter(has_text="Handed to a person").locator("dd")
        return figure.inner_text()

    assert poll(counted, lambda shown: shown == "1", what="the overview's handoffs") == "1"
    assert dialogs == []  # nothing a customer or a person typed ran
    assert stale_dialogs == []
    context.close()


def test_an_editor_may_reply_and_resolve(api: Api, console_owner: str) -> None:
    """docs/handoff.md: a reply and a resolution take the scope ``handoff``, which editors hold (they
    may not erase: ``sessions:write`` stays the owners'); the conversation page shows editors the
    form and the button."""
    app_id, key, session_id = _handed_off_app(api, "console handoff editor")
    editor_email = _email("handoff-editor")
    add_operator(api, editor_email, {app_id: "editor"})
    editor = sign_in(api, editor_email)
    try:
        shown = editor.http.get(f"/console/apps/{app_id}/conversations/{session_id}")
        assert shown.status_code == 200, shown.text
        assert "Send reply" in shown.text
        assert "Mark resolved" in shown.text
        path = f"/v1/sessions/{session_id}"
        reply = editor.call("POST", f"{path}/messages", app=app_id, json={"role": "agent", "content": "Hi"})
        assert reply.status_code == 201, reply.text
        resolved = editor.call("POST", f"{path}/handoff/resolve", app=app_id)
        assert resolved.status_code == 200, resolved.text
    finally:
        editor.close()
    assert _session(api, key, session_id)["handoff"]["status"] == "resolved"


def test_the_talk_to_a_person_settings_save_reload_and_refuse_a_bad_address(
    api: Api, console_owner: str, browser: Browser
) -> None:
    app_id = api.create_app("console handoff settings")
    context = browser.new_context()
    page = context.new_page()
    browser_sign_in(page, api.url, console_owner)
    page.goto(f"{api.url}/console/apps/{app_id}/settings")
    section = page.locator("section").filter(has=page.get_by_role("heading", name="Talk to a person"))
    enabled = section.get_by_role("checkbox", name=re.compile("may ask for a person"))
    expect(enabled).not_to_be_checked()
    expect(section.get_by_role("radio", name=re.compile("^Their e-mail and name"))).to_be_checked()
    address = section.get_by_role("textbox", name=re.compile("^Support e-mail address"))
    expect(address).to_have_value("")

    required = section.get_by_role("radio", name=re.compile("^Their e-mail, which they must give"))
    enabled.check()
    required.check()
    address.fill("help@example.com")
    section.get_by_role("button", name="Save handoff settings").click()
    expect(section.get_by_role("status")).to_have_text("Handoff settings saved.")
    stored = _ok(api.admin.get(f"/v1/admin/apps/{app_id}/handoff"))
    assert stored == {"enabled": True, "ask_contact": "required", "notify_email": "help@example.com"}

    page.reload()
    expect(enabled).to_be_checked()
    expect(required).to_be_checked()
    expect(address).to_have_value("help@example.com")
    assert page_violations(page) == []

    # A malformed address: the API's refusal in the form, nothing stored, what was typed kept.
    refused = api.admin.put(
        f"/v1/admin/apps/{app_id}/handoff",
        json={"enabled": True, "ask_contact": "required", "notify_email": "not an address"},
    )
    assert refused.status_code in (400, 422), refused.text
    address.fill("not an address")
    section.get_by_role("button", name="Save handoff settings").click()
    expect(section.get_by_role("alert")).to_have_text(refused.json()["error"]["message"])
    expect(address).to_have_value("not an address")
    assert _ok(api.admin.get(f"/v1/admin/apps/{app_id}/handoff"))["notify_email"] == "help@example.com"

    # Empty sends no e-mail (null); off again.
    address.fill("")
    section.get_by_role("radio", name=re.compile("^Nothing")).check()
    enabled.uncheck()
    section.get_by_role("button", name="Save handoff settings").click()
    expect(section.get_by_role("status")).to_have_text("Handoff settings saved.")
    stored = _ok(api.admin.get(f"/v1/admin/apps/{app_id}/handoff"))
    assert stored == {"enabled": False, "ask_contact": "off", "notify_email": None}
    context.close()


def test_a_viewer_reads_the_handoff_but_may_not_reply_or_resolve_it(
    api: Api, console_owner: str, browser: Browser
) -> None:
    app_id, key, session_id = _handed_off_app(api, "console handoff viewer")
    viewer_email = _email("handoff-viewer")
    add_operator(api, viewer_email, {app_id: "viewer"})
    viewer = sign_in(api, viewer_email)
    try:
        path = f"/v1/sessions/{session_id}"
        refused_reply = viewer.call(
            "POST", f"{path}/messages", app=app_id, json={"role": "agent", "content": "Hi", "name": "V"}
        )
        assert refused_reply.status_code == 403, refused_reply.text
        refused_resolve = viewer.call("POST", f"{path}/handoff/resolve", app=app_id)
        assert refused_resolve.status_code == 403, refused_resolve.text
        refused_settings = viewer.call(
            "PUT", f"/v1/admin/apps/{app_id}/handoff", json={"enabled": True, "ask_contact": "off"}
        )
        assert refused_settings.status_code == 403, refused_settings.text
    finally:
        viewer.close()

    context = browser.new_context()
    page = context.new_page()
    dialogs = accepting_dialogs(page)
    browser_sign_in(page, api.url, viewer_email)
    page.goto(f"{api.url}/console/apps/{app_id}/conversations/{session_id}")
    panel = page.get_by_role("region", name="Handed to a person")
    expect(panel).to_contain_text("Waiting for a person")
    expect(panel.get_by_role("link", name=CONTACT["email"])).to_be_visible()
    expect(page.get_by_role("textbox", name="Your reply")).to_have_count(0)
    expect(page.get_by_role("button", name="Send reply")).to_have_count(0)
    expect(page.get_by_role("button", name="Mark resolved")).to_have_count(0)
    _no_markup_ran(page)

    # A reply button made in the page anyway: the API refuses it and the page says so in its words.
    panel.evaluate(
        """(section, path) => {
            const button = document.createElement("button");
            button.type = "button";
            button.textContent = "Reply anyway";
            button.dataset.api = path;
            button.dataset.body = JSON.stringify({ role: "agent", content: "Hi", name: "V" });
            section.append(button);
        }""",
        f"/v1/sessions/{session_id}/messages",
    )
    panel.get_by_role("button", name="Reply anyway").click()
    expect(panel.get_by_role("alert")).to_have_text(refused_reply.json()["error"]["message"])
    assert all(m["role"] != "agent" for m in _session(api, key, session_id)["messages"])
    assert _session(api, key, session_id)["handoff"]["status"] == "requested"

    # The settings: read, not changed.
    page.goto(f"{api.url}/console/apps/{app_id}/settings")
    section = page.locator("section").filter(has=page.get_by_role("heading", name="Talk to a person"))
    expect(section.get_by_role("checkbox", name=re.compile("may ask for a person"))).to_be_disabled()
    expect(section.get_by_role("button", name="Save handoff settings")).to_have_count(0)
    assert dialogs == []
    context.close()
