"""The support loop as a support manager lives it, in a real Chromium against the running stack.

Thirty questions through the widget (some the documents cannot answer), two answers rated down,
the unanswered ones grouped in ``GET /v1/analytics/unanswered``, one group turned into a curated
answer, a paraphrase answered with it and rated up, then the visitor's session erased: nothing
of it is left in feedback or analytics.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, Request, expect

from tests.api import Api, poll
from tests.browser import Site, ask, open_widget, serious_violations, shop_site
from tests.conftest import ROOT

# Answerable from POLICY (couriers, delivery time).
ANSWERABLE = [
    "Which courier do you ship with?",
    "Who delivers my parcel?",
    "How long does delivery take?",
    "When will my parcel arrive?",
    "Which delivery company do you use?",
    "How many days until my order arrives?",
    "Do you ship with Zorblax Couriers?",
    "What courier carries the parcels?",
    "How fast is shipping?",
    "Who is your shipping partner?",
    "How long do parcels take to arrive?",
    "Which carrier will bring my order?",
    "Is delivery within four days?",
    "What is the delivery time for parcels?",
    "Which company ships the parcels?",
    "How quickly do parcels arrive?",
    "Who ships my order?",
    "How long is the shipping time?",
    "Which courier service do you work with?",
    "How many days does shipping take?",
]
# Small talk between the blocks, so the last answerable question is not the context of the first
# unanswerable one (retrieval reads the previous question too).
BREAK = "thanks!"
CRYPTO = [
    "Can I pay with Bitcoin?",
    "Do you accept bitcoin payments?",
    "Is paying in Bitcoin possible?",
    "Can I pay for my order with bitcoin?",
    "Do you take Bitcoin?",
]
STORE = [
    "Do you have a shop in Berlin?",
    "Is there a store in Berlin I can visit?",
    "Can I visit your Berlin store?",
    "Where is your shop in Berlin?",
]
PARAPHRASE = "Can I pay using Bitcoin?"
CURATED = "We accept cards and PayPal. We do not accept Bitcoin or other cryptocurrencies."
SCREENSHOT = ROOT / "docs" / "screenshots" / "widget-curated-answer.png"


@pytest.fixture(scope="module")
def shop(api: Api) -> Iterator[tuple[Site, Api, str]]:
    with shop_site(api, "support loop") as (site, secret):
        yield site, api, secret


def answered(page: Page, question: str) -> Locator:
    """Ask, and the answer once it has ended (its thumbs come with the `end`)."""
    bots = page.locator(".msg.bot")
    before = bots.count()
    ask(page, question)
    expect(bots).to_have_count(before + 1)
    answer = bots.last
    expect(answer).not_to_have_attribute("aria-busy", "true", timeout=20_000)
    return answer


def rate(answer: Locator, name: str) -> None:
    button = answer.get_by_role("group", name="Rate this answer").get_by_role("button", name=name, exact=True)
    button.click()
    expect(button).to_have_attribute("aria-pressed", "true", timeout=10_000)


def today() -> dict[str, str]:
    day = datetime.now(UTC).date().isoformat()
    return {"start_date": day, "end_date": day}


def unanswered(api: Api, secret: str) -> list[dict[str, Any]]:
    response = api.http.get(
        "/v1/analytics/unanswered", params={**today(), "examples": 20}, headers=api.auth(secret)
    )
    assert response.status_code == 200, response.text
    groups: list[dict[str, Any]] = response.json()["groups"]
    return groups


def analytics(api: Api, secret: str) -> dict[str, Any]:
    response = api.http.get("/v1/analytics", params=today(), headers=api.auth(secret))
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


def group_of(groups: list[dict[str, Any]], questions: list[str]) -> dict[str, Any] | None:
    """The group most of ``questions`` are in."""
    best = max(groups, key=lambda g: sum(e["question"] in questions for e in g["examples"]), default=None)
    if best is None or sum(e["question"] in questions for e in best["examples"]) < 3:
        return None
    return best


def test_the_support_loop_in_the_widget(browser: Browser, shop: tuple[Site, Api, str]) -> None:
    site, api, secret = shop
    page = browser.new_page()
    ratings: list[dict[str, Any]] = []

    def seen(request: Request) -> None:
        if request.method == "POST" and request.url.endswith("/feedback"):
            ratings.append(request.post_data_json)

    page.on("request", seen)
    page.goto(site.origin)
    open_widget(page)

    # 1. Thirty questions, ten of which the documents cannot answer; two answers rated down.
    for number, question in enumerate([*ANSWERABLE, BREAK, *CRYPTO, *STORE]):
        answer = answered(page, question)
        if question in ANSWERABLE:
            expect(answer).to_contain_text("Zorblax")
        if number in (2, 5):
            rate(answer, "Not helpful")
    assert page.locator(".msg.user").count() == 30
    session_id = ratings[0]["session_id"]

    # 2. The unanswered questions, grouped: the Bitcoin ones together, the Berlin ones together,
    # the rated-down ones counted as such.
    groups = poll(
        lambda: unanswered(api, secret),
        lambda found: (
            group_of(found, CRYPTO) is not None
            and group_of(found, STORE) is not None
            and sum(g["rated_down"] for g in found) == 2
        ),
        what="the Bitcoin and Berlin groups",
    )
    crypto, store = group_of(groups, CRYPTO), group_of(groups, STORE)
    assert crypto is not None
    assert store is not None
    assert crypto["group_id"] != store["group_id"]
    assert crypto["declined"] >= 4
    assert crypto["representative"] in CRYPTO
    assert all(e["session_id"] == session_id for g in groups for e in g["examples"])
    assert groups == sorted(groups, key=lambda g: -g["unanswered"])  # most unanswered first

    # 3. Curate the Bitcoin group; a paraphrase now gets the curated answer, which is rated up.
    created = api.http.post(
        "/v1/answers",
        json={"questions": [crypto["representative"]], "answer": CURATED},
        headers=api.auth(secret),
    )
    assert created.status_code == 201, created.text
    answer_id = created.json()["answer_id"]
    page.get_by_role("button", name="Start a new conversation").click()

    reply = poll(  # chat's mirror follows within moments
        lambda: answered(page, PARAPHRASE),
        lambda reply: CURATED in (reply.text_content() or ""),
        what="the curated answer",
    )
    expect(reply.get_by_role("list", name="Sources")).to_contain_text("Curated answer")
    rate(reply, "Helpful")
    assert serious_violations(page) == []  # the curated answer, its source and the thumbs
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    second_session = ratings[-1]["session_id"]
    assert second_session != session_id

    report = poll(
        lambda: analytics(api, secret),
        lambda r: bool(r["curated_answers"]) and r["totals"]["feedback_up"] == 1,
        what="the curated answer's figures",
    )
    assert report["totals"]["curated"] >= 1
    assert report["totals"]["feedback_down"] == 2
    assert report["totals"]["declined"] >= 8
    assert report["totals"]["conversations"] >= 2
    use = next(u for u in report["curated_answers"] if u["answer_id"] == answer_id)
    assert use["served"] >= 1
    assert use["feedback_up"] == 1
    assert any(f["filename"] == "policy.md" for f in report["top_files"])

    # 4. The visitor asks to be forgotten: both sessions erased, nothing of them anywhere.
    for erased in {session_id, second_session}:
        response = api.http.delete(f"/v1/sessions/{erased}", headers=api.auth(secret))
        assert response.status_code == 200, response.text
    feedback = api.http.get("/v1/feedback", headers=api.auth(secret)).json()["feedback"]
    assert feedback == []
    poll(lambda: unanswered(api, secret), lambda groups: groups == [], what="no unanswered groups left")
    after = poll(
        lambda: analytics(api, secret),
        lambda r: r["totals"]["messages"] == 0,
        what="analytics without the erased sessions",
    )
    assert after["top_questions"] == []
    assert after["totals"]["users"] == 0
    assert after["totals"]["feedback_up"] == after["totals"]["feedback_down"] == 0
    assert all(u["served"] == 0 for u in after["curated_answers"])
    page.close()
