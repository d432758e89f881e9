"""The widget in a real headless Chromium, served from loopback origins against the running stack."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, Request, Route, expect

from obdal.servers import free_port
from tests.api import Api
from tests.browser import PAGE, POLICY, Site, ask, open_widget, serious_violations, shop_site
from tests.conftest import BIN, LoneGateway, Stack, clean_env

HOSTILE = (
    "Warranty\n\nWarranty details: <img src=x onerror=\"window.__xss='img'\"> "
    "The warranty lasts 24 months. <script>window.__xss='script'</script>"
)


@pytest.fixture(scope="module")
def sites(stack: Stack) -> Iterator[tuple[Site, Site, Api, str]]:
    """An allowed site and a copycat site embedding the same publishable key."""
    api = Api(stack.url, stack.admin_token)
    app_id = api.create_app("widget")
    secret = api.create_key(app_id)["key"]
    api.index(secret, "policy.md", POLICY)
    api.index(secret, "warranty.md", HOSTILE)
    allowed_port = free_port()
    key = api.create_key(app_id, kind="publishable", allowed_origins=[f"http://127.0.0.1:{allowed_port}"])[
        "key"
    ]
    html = PAGE.format(gateway=stack.url, key=key)
    allowed = Site(html, port=allowed_port)
    copycat = Site(html)
    yield allowed, copycat, api, key
    allowed.close()
    copycat.close()


def test_streams_a_grounded_answer_with_sources(browser: Browser, sites: tuple[Site, Site, Api, str]) -> None:
    allowed, _, _, _ = sites
    page = browser.new_page()
    page.goto(allowed.origin)
    open_widget(page)
    ask(page, "Which courier do you ship with?")
    answer = page.locator(".msg.bot").last
    expect(answer).to_contain_text("Zorblax Couriers", timeout=20_000)
    expect(answer.get_by_role("list", name="Sources")).to_contain_text("policy.md")
    expect(answer).not_to_have_attribute("aria-busy", "true")
    page.close()


def test_reload_continues_the_session_and_new_conversation_resets(
    browser: Browser, sites: tuple[Site, Site, Api, str]
) -> None:
    allowed, _, _, _ = sites
    context = browser.new_context()
    page = context.new_page()
    page.goto(allowed.origin)
    open_widget(page)
    ask(page, "How long do parcels take to arrive?")
    expect(page.locator(".msg.bot").last).to_contain_text("four days", timeout=20_000)
    # The session id arrives with the stream's last event, just after the text: wait for it.
    page.wait_for_function(
        """() => Object.entries(localStorage).some(
            ([k, v]) => k.startsWith('obdal-widget') && v.includes('"session_id":"sess_'))""",
        timeout=20_000,
    )

    page.reload()
    open_widget(page)
    expect(page.locator(".msg.user")).to_have_text(["How long do parcels take to arrive?"])
    with page.expect_request(lambda r: r.url.endswith("/v1/chat") and r.method == "POST") as sent:
        ask(page, "And which courier?")
    assert '"session_id":"sess_' in (sent.value.post_data or "")
    expect(page.locator(".msg.bot").last).to_contain_text("Zorblax", timeout=20_000)

    page.get_by_role("button", name="Start a new conversation").click()
    expect(page.locator(".msg.user")).to_have_count(0)
    with page.expect_request(lambda r: r.url.endswith("/v1/chat") and r.method == "POST") as fresh:
        ask(page, "Which courier?")
    assert "session_id" not in (fresh.value.post_data or "")
    context.close()


def test_a_copycat_origin_is_refused(
    browser: Browser, sites: tuple[Site, Site, Api, str], stack: Stack
) -> None:
    _, copycat, _, key = sites
    page = browser.new_page()
    refusals = []
    page.on("requestfailed", lambda r: refusals.append(r.url) if r.url.endswith("/v1/chat") else None)
    page.goto(copycat.origin)
    open_widget(page)
    ask(page, "Which courier do you ship with?")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("not enabled for this website", timeout=20_000)
    expect(page.locator(".msg.bot")).to_have_count(1)  # the greeting only: no answer leaked
    assert refusals, "the browser request must fail"
    # And the API itself refused: preflight 403 and the request itself 403, from that origin.
    preflight = httpx.options(
        f"{stack.url}/v1/chat",
        headers={"Origin": copycat.origin, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 403
    direct = httpx.post(
        f"{stack.url}/v1/chat",
        headers={"Origin": copycat.origin, "Authorization": f"Bearer {key}"},
        json={"message": "hi"},
    )
    assert direct.status_code == 403
    page.close()


def test_html_in_documents_is_never_executed(browser: Browser, sites: tuple[Site, Site, Api, str]) -> None:
    allowed, _, _, _ = sites
    page = browser.new_page()
    page.goto(allowed.origin)
    open_widget(page)
    ask(page, "How long does the warranty last?")
    answer = page.locator(".msg.bot").last
    expect(answer).to_contain_text("24 months", timeout=20_000)
    expect(answer).to_contain_text("<img src=x onerror=")  # shown as text
    expect(answer.get_by_role("list", name="Sources")).to_contain_text("<script>")
    assert page.locator("#obdal-widget >> img").count() == 0
    assert page.evaluate("window.__xss") is None
    page.close()


def test_keyboard_and_screen_reader_use(browser: Browser, sites: tuple[Site, Site, Api, str]) -> None:
    allowed, _, _, _ = sites
    page = browser.new_page()
    page.goto(allowed.origin)
    launcher = page.get_by_role("button", name="Open chat: Shop help")
    expect(launcher).to_have_attribute("aria-expanded", "false")
    launcher.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Close chat: Shop help")).to_have_attribute(
        "aria-expanded", "true"
    )
    focused = "document.getElementById('obdal-widget').shadowRoot.activeElement.id"
    assert page.evaluate(focused) == "obdal-input"
    log = page.get_by_role("log", name="Conversation")
    expect(log).to_have_attribute("aria-live", "polite")
    page.keyboard.type("Which courier do you ship with?")
    page.keyboard.press("Enter")
    expect(log.locator(".msg.bot").last).to_contain_text("Zorblax", timeout=20_000)
    assert serious_violations(page) == []  # open, with an answer and its sources
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
    assert (
        page.evaluate("document.getElementById('obdal-widget').shadowRoot.activeElement.className")
        == "launcher"
    )
    page.close()


def test_phone_viewport_and_hostile_host_css(
    browser: Browser, sites: tuple[Site, Site, Api, str], tmp_path: Path
) -> None:
    allowed, _, _, _ = sites
    page = browser.new_page(viewport={"width": 375, "height": 667}, is_mobile=True, has_touch=True)
    page.goto(allowed.origin)
    launcher = page.get_by_role("button", name="Open chat: Shop help")
    box = launcher.bounding_box()
    assert box is not None
    assert box["width"] == 56  # the host's `button {display:none}` and font sizes do not reach it
    assert page.locator("#own").is_hidden()  # while the host page's own button obeys its CSS
    open_widget(page)
    panel = page.get_by_role("dialog", name="Shop help").bounding_box()
    assert panel is not None
    assert (panel["width"], panel["height"]) == (375, 667)  # full screen on a phone
    color = page.get_by_role("heading", name="Shop help").evaluate("e => getComputedStyle(e).color")
    # Not the host's red: the widget's dark text, which contrasts more than white on the light #0a7.
    assert color == "rgb(17, 17, 17)"
    page.screenshot(path=str(tmp_path / "phone.png"))
    ask(page, "Which courier do you ship with?")
    expect(page.locator(".msg.bot").last).to_contain_text("Zorblax", timeout=20_000)
    page.screenshot(path="/tmp/widget-phone.png")
    page.close()


def test_rate_limit_is_explained(browser: Browser, sites: tuple[Site, Site, Api, str], stack: Stack) -> None:
    _, _, api, secret_key_holder = sites
    app_id = api.admin.get(f"/v1/admin/keys/key_{secret_key_holder.split('_')[2]}").json()["app_id"]
    port = free_port()
    # A key of its own: one question a minute, so the second is refused.
    key = api.create_key(
        app_id, kind="publishable", allowed_origins=[f"http://127.0.0.1:{port}"], rate_limit_rpm=1
    )["key"]
    site = Site(PAGE.format(gateway=stack.url, key=key), port=port)
    try:
        page = browser.new_page()
        page.goto(site.origin)
        open_widget(page)
        ask(page, "Which courier do you ship with?")
        expect(page.locator(".msg.bot").last).to_contain_text("Zorblax", timeout=20_000)
        ask(page, "And how long does it take?")
        expect(page.get_by_role("alert")).to_contain_text("Too many questions", timeout=20_000)
        page.close()
    finally:
        site.close()


def test_service_down_is_explained(browser: Browser, lone_gateway: LoneGateway) -> None:
    """Chat workers gone, then the gateway itself: the widget says which, instead of spinning."""
    api = lone_gateway.api
    site_port = free_port()
    key = api.create_key(
        api.create_app("down"), kind="publishable", allowed_origins=[f"http://127.0.0.1:{site_port}"]
    )["key"]
    site = Site(PAGE.format(gateway=lone_gateway.url, key=key), port=site_port)
    try:
        page = browser.new_page()
        page.goto(site.origin)
        open_widget(page)
        ask(page, "Is anyone there?")
        expect(page.get_by_role("alert")).to_contain_text("temporarily unavailable", timeout=20_000)
        # Then the gateway itself goes: not mistaken for this website being refused.
        assert lone_gateway.gateway.stop() == 0
        ask(page, "Anyone at all?")
        expect(page.get_by_role("alert").last).to_contain_text("cannot be reached", timeout=20_000)
        expect(page.get_by_text("not enabled for this website")).to_have_count(0)
        page.close()
    finally:
        site.close()


def test_demo_command_and_page(browser: Browser, stack: Stack) -> None:
    import subprocess

    done = subprocess.run(
        [str(BIN / "obdal"), "--url", stack.url, "--admin-token", stack.admin_token, "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
    )
    assert done.returncode == 0, done.stderr
    demo_url = done.stdout.strip().split()[-1]
    assert demo_url.startswith(f"{stack.url}/demo?key=obd_pk_")
    page = browser.new_page()
    page.goto(demo_url)
    expect(page.get_by_role("heading", name="Obdal widget demo")).to_be_visible()
    page.get_by_role("button", name="Open chat: Obdal demo").click()
    ask(page, "How long is the warranty?")
    expect(page.locator(".msg.bot").last).to_contain_text("24-month warranty", timeout=20_000)
    page.close()
    assert httpx.get(f"{stack.url}/demo", params={"key": "<script>"}).status_code == 400
    assert "obdal demo" in httpx.get(f"{stack.url}/demo").text


def test_widget_script_is_small_and_cacheable(stack: Stack) -> None:
    import gzip

    response = httpx.get(f"{stack.url}/widget.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/javascript")
    assert len(gzip.compress(response.content)) < 40 * 1024
    # No CDN, no web font: the only address is the placeholder in the usage comment.
    assert re.findall(rb"https?://[\w.-]+", response.content) == [b"https://HOST"]
    again = httpx.get(f"{stack.url}/widget.js", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304


def test_the_docs_and_the_demo_work_under_their_content_security_policies(
    browser: Browser, stack: Stack
) -> None:
    api = Api(stack.url, stack.admin_token)
    _, key = api.new_tenant("csp", kind="publishable", allowed_origins=[stack.url])
    page = browser.new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))

    page.goto(f"{stack.url}/docs")
    # Swagger UI, from the gateway's pinned copy, drew the operations from the schema.
    expect(page.get_by_text("/v1/chat/completions").first).to_be_visible(timeout=20_000)
    page.goto(f"{stack.url}/demo?key={key}")
    page.get_by_role("button", name="Open chat: Obdal demo").click()
    expect(page.get_by_role("textbox")).to_be_visible()
    page.close()
    assert violations == []
    assert all(url.startswith(stack.url) for url in requested), requested


# --- Feedback on answers (issue 18) ---------------------------------------------------------

COMMENT = "Wrong courier <img src=x onerror=\"window.__xss='comment'\"> for me"


@pytest.fixture(scope="module")
def rated(api: Api) -> Iterator[tuple[Site, Api, str]]:
    """An app of its own, so `GET /v1/feedback` holds only what these tests sent."""
    with shop_site(api, "feedback") as (site, secret):
        yield site, api, secret


def feedback_items(api: Api, secret: str) -> list[dict[str, object]]:
    response = api.http.get("/v1/feedback", headers=api.auth(secret))
    assert response.status_code == 200, f"GET /v1/feedback: {response.status_code} {response.text[:200]}"
    items: list[dict[str, object]] = response.json()["feedback"]
    return items


def wait_feedback(api: Api, secret: str, message_id: str, **expected: object) -> dict[str, object]:
    """The one stored rating of a message once it has ``expected`` (a second replaces the first)."""
    deadline = time.monotonic() + 20
    while True:
        mine = [i for i in feedback_items(api, secret) if i.get("message_id") == message_id]
        if len(mine) == 1 and all(mine[0].get(k) == v for k, v in expected.items()):
            return mine[0]
        assert time.monotonic() < deadline, f"feedback on {message_id}: {mine}, expected {expected}"
        time.sleep(0.2)


def rated_answer(page: Page) -> Locator:
    """Ask, and the answer's "Rate this answer" group, which comes with its `end`."""
    open_widget(page)
    ask(page, "Which courier do you ship with?")
    answer = page.locator(".msg.bot").last
    expect(answer).to_contain_text("Zorblax", timeout=20_000)
    group = answer.get_by_role("group", name="Rate this answer")
    expect(group).to_be_visible(timeout=20_000)
    expect(answer).not_to_have_attribute("aria-busy", "true")
    # Never on the greeting, which has no message id.
    expect(page.locator(".msg.bot").first.get_by_role("group")).to_have_count(0)
    return group


def feedback_posts(page: Page) -> list[dict[str, object]]:
    sent: list[dict[str, object]] = []

    def seen(request: Request) -> None:
        if request.method == "POST" and request.url.endswith("/feedback"):
            sent.append({"url": request.url, "body": request.post_data_json})

    page.on("request", seen)
    return sent


ACTIVE = "document.getElementById('obdal-widget').shadowRoot.activeElement"


def test_feedback_with_a_comment_reaches_the_api(browser: Browser, rated: tuple[Site, Api, str]) -> None:
    site, api, secret = rated
    page = browser.new_page()
    sent = feedback_posts(page)
    page.goto(site.origin)
    group = rated_answer(page)
    helpful = group.get_by_role("button", name="Helpful", exact=True)
    unhelpful = group.get_by_role("button", name="Not helpful", exact=True)
    expect(helpful).to_have_attribute("aria-pressed", "false")
    expect(unhelpful).to_have_attribute("aria-pressed", "false")

    unhelpful.click()
    expect(unhelpful).to_have_attribute("aria-pressed", "true", timeout=10_000)
    expect(helpful).to_have_attribute("aria-pressed", "false")
    message_id = sent[0]["url"].split("/v1/messages/")[1].split("/")[0]  # type: ignore[union-attr]
    assert message_id.startswith("msg_")
    session_id = sent[0]["body"]["session_id"]  # type: ignore[index]
    assert sent[0]["body"] == {"rating": "down", "session_id": session_id}
    assert str(session_id).startswith("sess_")

    sheet = page.get_by_role("form", name="Tell us what was wrong")
    expect(sheet).to_be_visible()
    assert page.evaluate(ACTIVE + ".tagName") == "SELECT"  # focus moved into the form
    sheet.get_by_label("What was wrong? (optional)").select_option("inaccurate")
    sheet.get_by_label("Comment (optional)").fill(COMMENT)
    sheet.get_by_role("button", name="Send feedback").click()
    expect(group.get_by_role("status")).to_have_text("Thanks for your feedback", timeout=10_000)
    expect(sheet).to_have_count(0)
    assert sent[1]["body"] == {
        "rating": "down",
        "reason": "inaccurate",
        "comment": COMMENT,
        "session_id": session_id,
    }
    stored = wait_feedback(api, secret, message_id, rating="down", comment=COMMENT)
    assert stored["reason"] == "inaccurate"
    assert stored["session_id"] == session_id
    assert stored["question"] == "Which courier do you ship with?"
    assert "Zorblax" in str(stored["answer"])
    # The comment stayed text: nothing in it ran or became an element.
    assert page.locator("#obdal-widget >> img").count() == 0
    assert page.evaluate("window.__xss") is None

    # Changeable: "Helpful" now replaces the rating (one per message).
    helpful.click()
    expect(helpful).to_have_attribute("aria-pressed", "true", timeout=10_000)
    expect(unhelpful).to_have_attribute("aria-pressed", "false")
    assert sent[2]["body"] == {"rating": "up", "session_id": session_id}
    wait_feedback(api, secret, message_id, rating="up")  # still one item for the message

    # A reload shows the answer with its rating kept.
    page.reload()
    open_widget(page)
    kept = page.locator(".msg.bot").last.get_by_role("group", name="Rate this answer")
    expect(kept.get_by_role("button", name="Helpful", exact=True)).to_have_attribute("aria-pressed", "true")
    page.close()


def test_feedback_by_keyboard_and_its_accessibility(browser: Browser, rated: tuple[Site, Api, str]) -> None:
    site, api, secret = rated
    page = browser.new_page()
    sent = feedback_posts(page)
    page.goto(site.origin)
    group = rated_answer(page)
    helpful = group.get_by_role("button", name="Helpful", exact=True)
    unhelpful = group.get_by_role("button", name="Not helpful", exact=True)

    # From the question box, Shift+Tab goes back through the conversation to the thumbs.
    page.get_by_role("textbox", name="Your question").focus()
    for _ in range(6):
        if page.evaluate(ACTIVE + ".getAttribute('aria-label')") == "Not helpful":
            break
        page.keyboard.press("Shift+Tab")
    assert page.evaluate(ACTIVE + ".getAttribute('aria-label')") == "Not helpful"
    outline = page.evaluate(f"getComputedStyle({ACTIVE}).outlineStyle")
    assert outline == "solid"  # a visible focus ring (keyboard focus: :focus-visible)
    page.keyboard.press("Shift+Tab")
    assert page.evaluate(ACTIVE + ".getAttribute('aria-label')") == "Helpful"
    page.keyboard.press("Enter")
    expect(helpful).to_have_attribute("aria-pressed", "true", timeout=10_000)
    expect(group.get_by_role("status")).to_have_text("Thanks for your feedback")
    assert page.evaluate(ACTIVE + ".getAttribute('aria-label')") == "Helpful"  # focus stayed

    page.keyboard.press("Tab")
    page.keyboard.press("Space")
    expect(unhelpful).to_have_attribute("aria-pressed", "true", timeout=10_000)
    expect(helpful).to_have_attribute("aria-pressed", "false")
    sheet = page.get_by_role("form", name="Tell us what was wrong")
    expect(sheet).to_be_visible()
    reason = sheet.get_by_role("combobox", name="What was wrong? (optional)")
    comment = sheet.get_by_role("textbox", name="Comment (optional)")
    expect(reason).to_be_focused()
    expect(comment).to_have_attribute("maxlength", "2000")
    # Every control of the open widget has an accessible name; the thumbs are toggle buttons.
    names = page.evaluate(
        """() => [...document.getElementById('obdal-widget').shadowRoot
              .querySelectorAll('button, select, textarea')]
            .filter(e => !e.closest('[hidden]'))
            .map(e => e.getAttribute('aria-label') || (e.id && e.getRootNode()
              .querySelector(`label[for="${e.id}"]`)?.textContent) || e.textContent.trim())"""
    )
    assert all(names), names
    assert page.locator("#obdal-widget .fb-btn:not([aria-pressed])").count() == 0
    expect(page.get_by_role("dialog", name="Shop help")).to_be_visible()
    # Inside the bubble, without breaking the layout: nothing wider than the conversation.
    log_box = page.get_by_role("log", name="Conversation").bounding_box()
    sheet_box = sheet.bounding_box()
    assert log_box is not None
    assert sheet_box is not None
    assert log_box["x"] <= sheet_box["x"]
    assert sheet_box["x"] + sheet_box["width"] <= log_box["x"] + log_box["width"]
    assert serious_violations(page) == []  # the open widget with its feedback form
    page.screenshot(path="/tmp/widget-feedback.png")
    page.set_viewport_size({"width": 375, "height": 667})  # and on a phone, full screen
    for control in (sheet, comment, sheet.get_by_role("button", name="Send feedback")):
        box = control.bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 375
    page.set_viewport_size({"width": 1280, "height": 720})
    expect(reason).to_be_focused()

    page.keyboard.press("ArrowDown")  # the first reason
    page.keyboard.press("Tab")
    expect(comment).to_be_focused()
    page.keyboard.type("Too vague")
    page.keyboard.press("Tab")
    expect(sheet.get_by_role("button", name="Skip")).to_be_focused()
    page.keyboard.press("Tab")
    expect(sheet.get_by_role("button", name="Send feedback")).to_be_focused()
    page.keyboard.press("Enter")
    expect(sheet).to_have_count(0, timeout=10_000)
    expect(unhelpful).to_be_focused()  # back where the form was opened from
    assert sent[-1]["body"] == {
        "rating": "down",
        "reason": "inaccurate",
        "comment": "Too vague",
        "session_id": sent[0]["body"]["session_id"],  # type: ignore[index]
    }

    # Escape in the form closes the form, not the chat, and returns to the button.
    page.keyboard.press("Enter")
    expect(sheet).to_be_visible()
    page.keyboard.press("Escape")
    expect(sheet).to_have_count(0)
    expect(page.get_by_role("dialog", name="Shop help")).to_be_visible()
    expect(unhelpful).to_be_focused()
    message_id = sent[0]["url"].split("/v1/messages/")[1].split("/")[0]  # type: ignore[union-attr]
    wait_feedback(api, secret, message_id, rating="down", comment="Too vague")
    page.close()


def test_feedback_errors_are_shown_as_text(browser: Browser, rated: tuple[Site, Api, str]) -> None:
    """Refusals from the API, stubbed here: shown in an alert by the thumbs, never as HTML."""
    site, _, _ = rated
    page = browser.new_page()
    page.goto(site.origin)
    group = rated_answer(page)
    refusal = {"error": {"code": "rate_limited", "message": "<img src=x onerror=alert(1)>"}}

    def refuse(route: Route) -> None:
        headers = {"Retry-After": "7", "Access-Control-Expose-Headers": "Retry-After"}
        route.fulfill(status=429, json=refusal, headers=headers)

    page.route("**/v1/messages/*/feedback", refuse)
    unhelpful = group.get_by_role("button", name="Not helpful", exact=True)
    unhelpful.click()
    alert = group.get_by_role("alert")
    expect(alert).to_have_text("Too many requests right now. Please wait 7 seconds and try again.")
    expect(unhelpful).to_have_attribute("aria-pressed", "false")  # the server did not record it
    expect(page.get_by_role("form", name="Tell us what was wrong")).to_have_count(0)
    page.unroute("**/v1/messages/*/feedback")
    page.route("**/v1/messages/*/feedback", lambda route: route.abort())
    group.get_by_role("button", name="Helpful", exact=True).click()
    expect(alert).to_contain_text("could not be sent")
    assert page.locator("#obdal-widget >> img").count() == 0
    page.close()
