"""The console's support loop in Chromium against the running stack: unanswered questions and
answers rated down, each turned into a curated answer in one click (and then given by chat), the
curated answers listed, changed and deleted, the API's refusals said in words, end users' words
shown as text; a viewer reads but cannot write."""

from __future__ import annotations

import re
import uuid
from typing import Any

from playwright.sync_api import Dialog, Locator, Page, expect

from tests.api import Api, poll
from tests.browser import chromium
from tests.console import add_operator, browser_sign_in, ensure_owner, page_violations, screenshot, sign_in
from tests.test_end_to_end import POLICY

# Paraphrases the stack's embedder groups together (as tests/test_analytics.py), none answered
# by POLICY.
GIFT_WRAP = [
    "Do you offer gift wrapping?",
    "Can you gift wrap my order?",
    "is gift wrapping available for presents",
    "Could my parcel be gift-wrapped?",
]
# An end user's question that is markup: the console must show it, never run it.
XSS = "<img src=x onerror=alert(1)> Can I pay with Bitcoin?"
COURIER = "Which courier do you ship with?"
COMMENT = "We moved to <b>Parcelo</b> in May."
GIFT_ANSWER = "Yes: choose Gift wrap at checkout, it costs 3 euros per parcel."
BETTER_ANSWER = "Since May every parcel goes with Parcelo, tracked to your door."
CHANGED_ANSWER = "Yes: tick Gift wrap at checkout (3 euros a parcel), with a card if you like."


def _unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def _ok(response: Any) -> Any:
    assert response.status_code in (200, 201), response.text
    return response.json()


def _answer_box(scope: Locator) -> Locator:
    # "Source file (… cited with the answer)" is a combobox, so the only textbox named Answer….
    return scope.get_by_role("textbox", name=re.compile(r"^Answer"))


def _unanswered_groups(api: Api, key: str) -> dict[str, dict[str, Any]]:
    page = _ok(api.http.get("/v1/analytics/unanswered", headers=api.auth(key), params={"examples": 5}))
    return {g["representative"]: g for g in page["groups"]}


def _answers(api: Api, key: str) -> list[dict[str, Any]]:
    answers: list[dict[str, Any]] = _ok(api.http.get("/v1/answers", headers=api.auth(key)))["answers"]
    return answers


def _dialogs(page: Page) -> list[str]:
    """Confirmations are accepted (as the operator would); any other dialog (an alert an end
    user's markup ran) is recorded, for the test to fail on."""
    seen: list[str] = []

    def handle(dialog: Dialog) -> None:
        if dialog.type == "confirm":
            dialog.accept()
        else:
            seen.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

    page.on("dialog", handle)
    return seen


def test_unanswered_questions_and_bad_answers_become_curated_answers(api: Api) -> None:
    ensure_owner(api)
    app_id, key = api.new_tenant(_unique("console-support"))
    file_id = api.index(key, "policy.md", POLICY)
    editor = f"{_unique('support-editor')}@obdal.test"
    add_operator(api, editor, {app_id: "editor"})

    for question in [*GIFT_WRAP, XSS]:
        assert not _ok(api.chat(key, question, user="carol"))["sources"], f"{question!r} was answered"
    courier = _ok(api.chat(key, COURIER, user="bob"))
    assert courier["sources"]
    _ok(
        api.http.post(
            f"/v1/messages/{courier['message_id']}/feedback",
            headers=api.auth(key),
            json={"rating": "down", "reason": "outdated", "comment": COMMENT},
        )
    )
    groups = poll(
        lambda: _unanswered_groups(api, key),
        lambda g: g.get(GIFT_WRAP[0], {}).get("unanswered") == 4 and XSS in g and COURIER in g,
        what="the unanswered groups",
    )
    assert {e["question"] for e in groups[GIFT_WRAP[0]]["examples"]} == set(GIFT_WRAP)

    with chromium() as browser:
        page = browser.new_page()
        dialogs = _dialogs(page)
        browser_sign_in(page, api.url, editor)
        page.goto(f"{api.url}/console/apps/{app_id}/unanswered")
        expect(page.get_by_role("heading", level=1)).to_have_text("Unanswered questions")
        nav = page.get_by_role("navigation", name="App")
        expect(nav.get_by_role("link", name="Unanswered", exact=True)).to_have_attribute(
            "aria-current", "page"
        )
        table = page.get_by_role("table", name=re.compile("^Groups of similar questions"))
        gift = table.get_by_role("row").filter(has_text=GIFT_WRAP[0])
        expect(gift).to_have_count(1)
        expect(gift.get_by_role("cell").first).to_have_text("4 of 4")
        # The end user's markup is text, in the table and in its prefilled form.
        expect(table.get_by_role("rowheader", name=XSS, exact=True)).to_be_visible()
        expect(page.locator("main img")).to_have_count(0)
        rated = page.get_by_role("table", name=re.compile("rated down"))
        courier_row = rated.get_by_role("row").filter(has_text=COURIER)
        expect(courier_row).to_contain_text(COMMENT)
        expect(courier_row).to_contain_text("outdated")
        expect(courier_row.locator("b")).to_have_count(0)
        assert page_violations(page) == []

        # One click opens the group's answer with its questions; the operator types the answer.
        gift.get_by_text("Write an answer").click()
        questions = gift.get_by_role("textbox", name=re.compile("^Questions"))
        assert set(questions.input_value().splitlines()) == set(GIFT_WRAP)
        _answer_box(gift).fill(GIFT_ANSWER)
        assert page_violations(page) == []
        screenshot(page, "unanswered")
        gift.get_by_role("button", name="Save answer").click()
        expect(gift.get_by_role("status")).to_have_text("Answered")
        expect(gift.get_by_role("status")).to_be_focused()
        expect(gift.get_by_text("Write an answer")).to_have_count(0)

        # Its questions now get the curated answer, as written (chat follows within moments).
        curated = poll(
            lambda: _ok(api.chat(key, GIFT_WRAP[1])),
            lambda a: a["content"] == GIFT_ANSWER,
            timeout=10,
            what="the curated answer",
        )
        assert curated["sources"][0]["kind"] == "curated"

        # The answer rated down, rewritten from the same page.
        courier_row.get_by_text("Write a better answer").click()
        assert courier_row.get_by_role("textbox", name=re.compile("^Questions")).input_value() == COURIER
        _answer_box(courier_row).fill(BETTER_ANSWER)
        courier_row.get_by_role("button", name="Save answer").click()
        expect(courier_row.get_by_role("status")).to_have_text("Answered")
        written = {a["answer"]: a for a in _answers(api, key)}
        assert set(written) == {GIFT_ANSWER, BETTER_ANSWER}
        assert written[BETTER_ANSWER]["questions"] == [COURIER]
        assert set(written[GIFT_ANSWER]["questions"]) == set(GIFT_WRAP)

        # Shown again, what has been answered says so.
        page.reload()
        expect(gift.get_by_role("status")).to_have_text("Answered")
        expect(gift.get_by_text("Write an answer")).to_have_count(0)
        expect(table.get_by_role("row").filter(has_text=XSS).get_by_text("Write an answer")).to_have_count(1)

        page.get_by_role("navigation", name="App").get_by_role("link", name="Answers", exact=True).click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Curated answers")
        listed = page.get_by_role("table", name=re.compile("^Curated answers"))
        gift_answer = listed.get_by_role("row").filter(has_text=GIFT_ANSWER)
        expect(gift_answer).to_have_count(1)
        for question in GIFT_WRAP:
            expect(gift_answer.get_by_role("rowheader")).to_contain_text(question)
        assert page_violations(page) == []
        screenshot(page, "answers")

        # Changed: new text and a source file.
        # The app's files stand once in the page, not once in each form's list.
        assert page.content().count(">policy.md</option>") == 1
        gift_answer.get_by_text("Edit", exact=True).click()
        _answer_box(gift_answer).fill(CHANGED_ANSWER)
        source = gift_answer.get_by_role("combobox", name=re.compile("^Source file"))
        source.focus()  # as Tab takes a keyboard user there: the files join its list
        source.select_option(label="policy.md")
        gift_answer.get_by_role("button", name="Save changes").click()
        changed = listed.get_by_role("row").filter(has_text=CHANGED_ANSWER)
        expect(changed).to_contain_text("policy.md")
        [stored] = [a for a in _answers(api, key) if a["answer"] == CHANGED_ANSWER]
        assert stored["source_file_id"] == file_id

        # The API's refusals, in its words.
        new = page.get_by_role("region", name="Add a curated answer")
        new.get_by_role("textbox", name=re.compile("^Questions")).fill(
            "\n".join(f"Question number {n}?" for n in range(21))
        )
        _answer_box(new).fill("Something.")
        new.get_by_role("button", name="Add answer").click()
        expect(new.get_by_role("alert")).to_have_text("a curated answer may have at most 20 questions")
        new.get_by_role("textbox", name=re.compile("^Questions")).fill("Do you sell gift cards?")
        _answer_box(new).fill("   ")
        new.get_by_role("button", name="Add answer").click()
        expect(new.get_by_role("alert")).to_have_text("the answer must not be empty")
        assert len(_answers(api, key)) == 2

        # Deleted, after a confirmation.
        better = listed.get_by_role("row").filter(has_text=BETTER_ANSWER)
        better.get_by_role("button", name="Delete").click()
        expect(better).to_have_count(0)
        assert [a["answer"] for a in _answers(api, key)] == [CHANGED_ANSWER]
        assert dialogs == []


def test_a_viewer_reads_the_support_pages_but_cannot_write_answers(api: Api) -> None:
    ensure_owner(api)
    app_id, key = api.new_tenant(_unique("console-support-viewer"))
    _ok(api.http.post("/v1/answers", headers=api.auth(key), json={"questions": ["Q?"], "answer": "A <i>!"}))
    viewer_email = f"{_unique('support-viewer')}@obdal.test"
    add_operator(api, viewer_email, {app_id: "viewer"})
    viewer = sign_in(api, viewer_email)
    try:
        listed = _ok(viewer.call("GET", "/v1/answers", app=app_id))
        assert [a["answer"] for a in listed["answers"]] == ["A <i>!"]
        refused = viewer.call("POST", "/v1/answers", app=app_id, json={"questions": ["Q2?"], "answer": "B"})
        assert refused.status_code == 403, refused.text
        answer_id = listed["answers"][0]["answer_id"]
        assert viewer.call("DELETE", f"/v1/answers/{answer_id}", app=app_id).status_code == 403
        assert len(_answers(api, key)) == 1

        answers_page = viewer.http.get(f"/console/apps/{app_id}/answers")
        assert answers_page.status_code == 200, answers_page.text
        assert "A &lt;i&gt;!" in answers_page.text
        assert "Add a curated answer" not in answers_page.text
        assert 'data-method="DELETE"' not in answers_page.text
        unanswered = viewer.http.get(f"/console/apps/{app_id}/unanswered")
        assert unanswered.status_code == 200, unanswered.text
        assert "No unanswered questions" in unanswered.text

        # A date range the API refuses is said on the page, in the API's words.
        backwards = {"start_date": "2026-03-02", "end_date": "2026-03-01"}
        message = viewer.call("GET", "/v1/analytics/unanswered", app=app_id, params=backwards)
        assert message.status_code == 400
        shown = viewer.http.get(f"/console/apps/{app_id}/unanswered", params=backwards)
        assert shown.status_code == 200
        assert f'<p role="alert" class="error">{message.json()["error"]["message"]}</p>' in shown.text
    finally:
        viewer.close()
