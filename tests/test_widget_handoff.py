"""The widget's "Talk to a person" in a real headless Chromium against the running stack
(docs/handoff.md, docs/widget.md#talk-to-a-person): a declined answer offers a person, the
customer leaves a contact, the help desk's receiver gets the signed ``handoff.requested`` (checked
with the ``standardwebhooks`` library) and the support address the e-mail (a real SMTP server on
loopback), a person's replies arrive live in the open widget (and again after a reload), the
customer writes on while handed off, and the person marks it resolved."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, Request, Response, expect

from tests.api import Api
from tests.browser import Site, ask, open_widget, serious_violations, shop_site
from tests.conftest import ROOT
from tests.smtp_receiver import Inbox
from tests.test_handoff import UNKNOWN, reply, session
from tests.test_webhooks import add_endpoint
from tests.webhook_receiver import Receiver

SCREENSHOT = ROOT / "docs" / "screenshots" / "widget-handoff.png"
NOTICE = "We've passed your conversation to the team. A person will reply here."
RESOLVED = "The team marked this resolved; the assistant is back."
HOSTILE = "Here is a picture: <img src=x onerror=\"window.__xss='agent'\"> <script>window.__xss='s'</script>"
ACTIVE = "document.getElementById('obdal-widget').shadowRoot.activeElement"
LIVE_S = 2.0  # a person's reply shows in the open widget within this
SUPPORT = "support@shop.example"


@pytest.fixture(scope="module")
def desk(api: Api) -> Iterator[tuple[Site, Api, str, str]]:
    """An app with handoff on (contact optional), and the shop page embedding its widget: the
    page, the API, the app's id and its secret key."""
    with shop_site(api, "widget handoff") as (site, secret):
        app_id = str(api.admin.get(f"/v1/admin/keys/key_{secret.split('_')[2]}").json()["app_id"])
        set_handoff(api, app_id, enabled=True, ask_contact="optional", notify_email=SUPPORT)
        yield site, api, app_id, secret


@pytest.fixture(scope="module")
def helpdesk(desk: tuple[Site, Api, str, str]) -> Iterator[Receiver]:
    """The business's help desk: a webhook receiver verifying every request's signature."""
    _, api, _, secret = desk
    with Receiver() as receiver:
        add_endpoint(api, secret, receiver, events=["handoff.requested", "handoff.resolved"])
        yield receiver


def set_handoff(api: Api, app_id: str, **settings: Any) -> None:
    response = api.admin.put(f"/v1/admin/apps/{app_id}/handoff", json=settings)
    assert response.status_code == 200, f"PUT handoff settings: {response.status_code} {response.text[:300]}"


def declined(page: Page) -> Locator:
    """Ask what the documents cannot answer; the answer, once its "Talk to a person" is there."""
    bots = page.locator(".msg.bot")
    before = bots.count()
    ask(page, UNKNOWN)
    expect(bots).to_have_count(before + 1)
    answer = bots.last
    expect(answer.get_by_role("button", name="Talk to a person")).to_be_visible(timeout=20_000)
    expect(answer).not_to_have_attribute("aria-busy", "true")
    return answer


def events_opened(response: Response) -> bool:
    return "/events?" in response.url and response.request.method == "GET"


def stored_session_id(page: Page) -> str:
    found = page.evaluate(
        """() => Object.entries(localStorage).filter(([k]) => k.startsWith('obdal-widget'))
              .map(([, v]) => JSON.parse(v).session_id)[0]"""
    )
    assert isinstance(found, str), found
    assert found.startswith("sess_")
    return found


def agent_reply(api: Api, secret: str, session_id: str, content: str, **body: Any) -> str:
    sent = reply(api, secret, session_id, content, **body)
    assert sent.status_code == 201, f"POST messages: {sent.status_code} {sent.text[:300]}"
    return str(sent.json()["message_id"])


def shows_within(bubble: Locator, text: str, started: float) -> float:
    """Seconds from ``started`` until ``bubble`` shows ``text``; fails past LIVE_S."""
    expect(bubble).to_contain_text(text, timeout=LIVE_S * 1000)
    took = time.monotonic() - started
    assert took < LIVE_S, f"{text!r} took {took:.2f} s"
    return took


def test_a_declined_question_reaches_a_person_who_answers_in_the_open_widget(
    browser: Browser, desk: tuple[Site, Api, str, str], helpdesk: Receiver, inbox: Inbox
) -> None:
    site, api, _, secret = desk
    context = browser.new_context()
    page = context.new_page()
    page.goto(site.origin)
    open_widget(page)
    footer = page.locator("#obdal-widget .foot").get_by_role("button", name="Talk to a person")
    expect(footer).to_be_visible()  # offered on request too, before anything went wrong

    # 1. A declined answer offers a person; the customer leaves a contact.
    answer = declined(page)
    answer.get_by_role("button", name="Talk to a person").click()
    form = page.get_by_role("form", name="Your contact details")
    email = form.get_by_role("textbox", name="E-mail (optional)")
    expect(email).to_be_focused()
    expect(email).to_have_attribute("type", "email")
    expect(email).to_have_attribute("autocomplete", "email")
    expect(form.get_by_role("textbox", name="Name (optional)")).to_have_attribute("maxlength", "120")
    assert serious_violations(page) == []  # the open widget with the contact form
    email.fill("ana@example.com")
    form.get_by_role("textbox", name="Name (optional)").fill("Ana")
    with (
        page.expect_response(lambda r: r.url.endswith("/handoff") and r.request.method == "POST") as posted,
        page.expect_response(events_opened) as opened,
    ):
        form.get_by_role("button", name="Send to the team").click()
    assert posted.value.ok, f"POST handoff: {posted.value.status} {posted.value.text()[:300]}"
    assert posted.value.request.post_data_json == {
        "reason": "The assistant could not answer the question",
        "contact": {"email": "ana@example.com", "name": "Ana"},
    }
    assert opened.value.status == 200, f"events: {opened.value.status}"
    assert "api_key=obd_pk_" in opened.value.url
    expect(page.locator(".msg.note")).to_have_text([NOTICE])
    expect(form).to_have_count(0)
    expect(page.locator("#obdal-widget .ho")).to_have_count(0)  # no second offer while handed off
    expect(footer).to_be_hidden()
    expect(page.get_by_role("textbox", name="Your question")).to_be_focused()

    session_id = stored_session_id(page)
    stored = session(api, secret, session_id)
    assert stored["handoff"]["status"] == "requested", stored["handoff"]
    assert stored["handoff"]["contact"] == {"email": "ana@example.com", "name": "Ana"}
    assert stored["handoff"]["reason"] == "The assistant could not answer the question"

    # The help desk hears of it (signed), and the support address gets the e-mail.
    [requested] = helpdesk.wait("handoff.requested")
    assert requested.verified
    assert requested.data["session_id"] == session_id
    assert requested.data["contact"] == {"email": "ana@example.com", "name": "Ana"}
    assert requested.data["transcript"][0] == {
        **requested.data["transcript"][0],
        "role": "user",
        "content": UNKNOWN,
    }
    mail = inbox.wait(stored["handoff"]["handoff_id"])
    assert mail.rcpt_tos == [SUPPORT]
    assert mail.message["Reply-To"] == "Ana <ana@example.com>"
    assert UNKNOWN in mail.body

    # 2. A person replies: in the open widget within 2 s, under their name.
    agents = page.locator(".msg.agent")
    started = time.monotonic()
    agent_reply(api, secret, session_id, "Hi Ana, we take cards and PayPal.", name="Sam")
    shows_within(agents.nth(0), "Hi Ana, we take cards and PayPal.", started)
    expect(agents.nth(0).locator(".who")).to_have_text("Sam (a person from the team)")

    # 3. The customer writes on: no model answers, no empty bubble, the question is with the team.
    bots = page.locator(".msg.bot").count()
    with page.expect_response(lambda r: r.url.endswith("/v1/chat")) as chat:
        ask(page, "Thanks! My order is 1234.")
    assert chat.value.ok
    caption = page.locator("#obdal-widget .to-team")
    expect(caption).to_have_text(["Sent to the team"])
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_enabled()
    expect(page.locator(".msg.bot")).to_have_count(bots)
    assert serious_violations(page) == []  # a person's reply, the notice, the caption
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))

    # 4. Markup from a person stays text.
    started = time.monotonic()
    agent_reply(api, secret, session_id, HOSTILE)  # no name: shown as "Support"
    shows_within(agents.nth(1), "<img src=x onerror=", started)
    expect(agents.nth(1).locator(".who")).to_have_text("Support (a person from the team)")
    assert page.locator("#obdal-widget >> img").count() == 0
    assert page.evaluate("window.__xss") is None

    # 5. A reload keeps the replies and listens again: a reply sent now arrives too, once.
    with page.expect_response(events_opened) as reopened:
        page.reload()
    assert reopened.value.status == 200
    assert "after=msg_" in reopened.value.url  # only what this browser has not seen
    open_widget(page)
    expect(agents).to_have_count(2)
    expect(agents.nth(0)).to_contain_text("Hi Ana")
    expect(caption).to_have_count(1)
    started = time.monotonic()
    third = agent_reply(api, secret, session_id, "Your refund is on its way.", name="Sam")
    shows_within(agents.nth(2), "Your refund is on its way.", started)
    page.wait_for_timeout(300)  # a duplicate would come right behind
    expect(agents).to_have_count(3)
    stored = session(api, secret, session_id)
    kinds = [(m["role"], m.get("name")) for m in stored["messages"]]
    assert kinds.count(("agent", "Sam")) == 2
    assert ("user", None) in kinds
    assert third in [m.get("message_id") for m in stored["messages"]]

    # 6. Resolved: the widget says so and the assistant answers again.
    resolved = api.http.post(f"/v1/sessions/{session_id}/handoff/resolve", headers=api.auth(secret))
    assert resolved.status_code == 200, resolved.text
    expect(page.locator(".msg.note").last).to_have_text(RESOLVED, timeout=LIVE_S * 1000)
    expect(footer).to_be_visible()
    # The assistant answers (a whole answer with its thumbs), not the team. (Whether it finds
    # the passage depends on retrieval's context, the last question it answered: not checked.)
    bots = page.locator(".msg.bot").count()
    ask(page, "Which courier do you ship with?")
    expect(page.locator(".msg.bot")).to_have_count(bots + 1)
    expect(page.locator(".msg.bot").last.get_by_role("group", name="Rate this answer")).to_be_visible(
        timeout=20_000
    )
    expect(page.locator(".msg.bot").last).not_to_have_text("")
    expect(caption).to_have_count(1)
    assert session(api, secret, session_id)["handoff"]["status"] == "resolved"
    assert helpdesk.wait("handoff.resolved")[0].data["session_id"] == session_id
    context.close()


def test_contact_errors_and_keyboard_use(browser: Browser, desk: tuple[Site, Api, str, str]) -> None:
    """E-mail required: said at the field; refusals in words; Escape; then handoff off: none of it."""
    site, api, app_id, _ = desk
    set_handoff(api, app_id, enabled=True, ask_contact="required")
    page = browser.new_page()
    posts: list[Any] = []

    def seen(request: Request) -> None:
        if request.method == "POST" and request.url.endswith("/handoff"):
            posts.append(request.post_data_json)

    page.on("request", seen)
    page.goto(site.origin)
    open_widget(page)

    # With no conversation yet there is nothing to pass on: the widget says to ask first.
    footer = page.locator("#obdal-widget .foot").get_by_role("button", name="Talk to a person")
    footer.click()
    expect(page.locator(".msg.note").last).to_contain_text("Type your question below first")
    assert posts == []

    answer = declined(page)
    offer = answer.get_by_role("button", name="Talk to a person")
    offer.focus()
    page.keyboard.press("Enter")
    form = page.get_by_role("form", name="Your contact details")
    email = form.get_by_role("textbox", name="E-mail", exact=True)
    expect(email).to_be_focused()
    expect(email).to_have_attribute("aria-required", "true")
    page.keyboard.press("Escape")  # closes the form, not the chat, back to the button
    expect(form).to_have_count(0)
    expect(page.get_by_role("dialog", name="Shop help")).to_be_visible()
    expect(offer).to_be_focused()
    page.keyboard.press("Enter")
    expect(email).to_be_focused()
    page.keyboard.press("Tab")
    expect(form.get_by_role("textbox", name="Name (optional)")).to_be_focused()
    page.keyboard.press("Tab")
    expect(form.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Tab")
    send = form.get_by_role("button", name="Send to the team")
    expect(send).to_be_focused()
    assert page.evaluate(f"getComputedStyle({ACTIVE}).outlineStyle") == "solid"

    # Required and left empty: said at the field, nothing sent.
    page.keyboard.press("Enter")
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(email).to_be_focused()
    expect(form.get_by_role("alert").first).to_have_text(
        "Please enter your e-mail address, so the team can reach you."
    )
    assert posts == []

    # Refusals from the API, stubbed: each in words, at the field when it is about the field.
    def refuse(status: int, code: str) -> None:
        page.unroute("**/handoff")
        body = {"error": {"code": code, "message": "<img src=x onerror=alert(1)>"}}
        page.route("**/handoff", lambda route: route.fulfill(status=status, json=body))

    email.fill("ana@example.com")
    for status, code, said in [
        (422, "invalid_contact", "Please check your e-mail address"),
        (422, "contact_required", "Please enter your e-mail address"),
    ]:
        refuse(status, code)
        send.click()
        expect(form.locator(".ho-err").first).to_contain_text(said)
        expect(email).to_have_attribute("aria-invalid", "true")
    general = form.locator(".fb-error")
    for status, code, said in [
        (503, "unavailable", "The team cannot be reached right now"),
        (404, "session_not_found", "can no longer be passed to the team"),
        (429, "rate_limited", "Too many requests right now"),
    ]:
        refuse(status, code)
        send.click()
        expect(general).to_have_attribute("role", "alert")
        expect(general).to_contain_text(said)
        expect(email).not_to_have_attribute("aria-invalid", "true")
    page.unroute("**/handoff")
    page.route("**/handoff", lambda route: route.abort())
    send.click()
    expect(general).to_contain_text("Please check your connection")
    page.unroute("**/handoff")
    assert page.locator("#obdal-widget >> img").count() == 0
    expect(page.locator(".msg.note")).not_to_contain_text([NOTICE])

    # Turned off meanwhile: the API's refusal, in words.
    set_handoff(api, app_id, enabled=False)
    send.click()
    expect(general).to_contain_text("Talking to a person is not available here right now.")
    assert posts[-1] == {
        "reason": "The assistant could not answer the question",
        "contact": {"email": "ana@example.com"},
    }

    # And from the next page load, none of it shows, even under a declined answer.
    page.reload()
    open_widget(page)
    bots = page.locator(".msg.bot")
    before = bots.count()
    ask(page, UNKNOWN)
    expect(bots).to_have_count(before + 1)
    expect(bots.last.get_by_role("group", name="Rate this answer")).to_be_visible(timeout=20_000)
    expect(page.get_by_role("button", name="Talk to a person")).to_have_count(0)
    expect(page.locator("#obdal-widget .foot")).to_be_hidden()
    page.close()
