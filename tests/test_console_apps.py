"""An app's life in the console: renaming and deleting it (owners only, through the API), what
deleting leaves behind (nothing the API or the services could still serve), and the overview
page's charts and the apps list in Debian Chromium."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, expect

from obdal_common.contract import Ingest, Metering, NatsBus, Rpc
from obdal_common.errors import NotFound
from obdal_common.messaging import close, connect
from obdal_common.schemas import (
    AnalyticsQuery,
    CuratedAnswerQuery,
    FileListQuery,
    RetentionQuery,
    SessionLookup,
    SessionQuery,
)
from tests.api import Api, poll
from tests.browser import POLICY
from tests.conftest import Servers
from tests.console import (
    accepting_dialogs,
    add_operator,
    browser_sign_in,
    page_violations,
    screenshot,
    sign_in,
)

Req = TypeVar("Req")
Rep = TypeVar("Rep")
HOSTILE_NAME = '<script>alert("app")</script> & Co'


def _email(role: str) -> str:
    return f"{role}-{uuid.uuid4().hex[:8]}@apps.test"


def _ask(servers: Servers, rpc: Rpc[Req, Rep], payload: Req) -> Rep:
    """An RPC straight to the service that owns the data, past the gateway (which no longer
    knows the app): what the service itself still keeps."""

    async def call() -> Rep:
        nc = await connect(servers.nats.url, name="test-console-apps")
        try:
            return await rpc.call(NatsBus(nc), payload)
        finally:
            await close(nc)

    return asyncio.run(call())


def _chat(api: Api, key: str, message: str, **body: Any) -> str:
    response = api.chat(key, message, **body)
    assert response.status_code == 200, response.text
    session_id = str(response.json()["session_id"])
    api.wait_session(key, session_id, messages=2)
    return session_id


def test_only_an_owner_renames_or_deletes_an_app(api: Api, console_owner: str) -> None:
    app_id = api.create_app("lifecycle roles")
    editor = sign_in(api, add_operator(api, _email("editor"), {app_id: "editor"})["email"])
    viewer = sign_in(api, add_operator(api, _email("viewer"), {app_id: "viewer"})["email"])
    boss_record = add_operator(api, _email("owner"), {app_id: "owner"})
    boss = sign_in(api, boss_record["email"])
    try:
        for who in (editor, viewer):
            renamed = who.call("PATCH", f"/v1/admin/apps/{app_id}", json={"name": "mine now"})
            assert renamed.status_code == 403, renamed.text
            assert renamed.json()["error"]["code"] == "role_forbids"
            deleted = who.call("DELETE", f"/v1/admin/apps/{app_id}", params={"confirm": "true"})
            assert deleted.status_code == 403, deleted.text
        # Without the CSRF token even the owner's cookie changes nothing.
        forged = boss.call("PATCH", f"/v1/admin/apps/{app_id}", json={"name": "x"}, csrf=False)
        assert forged.status_code == 403

        unconfirmed = boss.call("DELETE", f"/v1/admin/apps/{app_id}")
        assert unconfirmed.status_code == 400, unconfirmed.text
        assert unconfirmed.json()["error"]["code"] == "confirmation_required"
        for bad in ({"name": ""}, {"name": "ok", "extra": 1}, {}):
            assert boss.call("PATCH", f"/v1/admin/apps/{app_id}", json=bad).status_code == 400

        renamed = boss.call("PATCH", f"/v1/admin/apps/{app_id}", json={"name": f"  {HOSTILE_NAME}  "})
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["name"] == HOSTILE_NAME
        assert api.admin.get(f"/v1/admin/apps/{app_id}").json()["name"] == HOSTILE_NAME
        # The audit log is metering's, written a moment later.
        renames = {"app_id": app_id, "action": "app.renamed"}
        events = poll(
            lambda: api.admin.get("/v1/admin/audit", params=renames).json(),
            lambda page: bool(page["events"]),
            what="the rename in the audit log",
        )
        [event] = events["events"]
        assert event["actor"] == boss_record["operator_id"]

        # The overview shows the name as text, and the owner's controls only to the owner.
        for who, controls in ((boss, True), (viewer, False)):
            html = who.http.get(f"/console/apps/{app_id}").text
            assert "<script>alert" not in html
            assert "&lt;script&gt;alert(&#34;app&#34;)&lt;/script&gt; &amp; Co" in html
            assert ("Delete app" in html) is controls
            assert 'role="img"' in html
        assert api.admin.get(f"/v1/admin/apps/{app_id}").status_code == 200  # still there
    finally:
        for who in (editor, viewer, boss):
            who.close()


def test_deleting_an_app_leaves_nothing_behind(api: Api, console_owner: str, servers: Servers) -> None:
    app_id, key = api.new_tenant("doomed")
    file_id = api.index(key, "policy.md", POLICY)
    sessions = {_chat(api, key, "Which courier do you ship with?", user="dana") for _ in range(2)}
    answer = api.http.post(
        "/v1/answers",
        headers=api.auth(key),
        json={"questions": ["Do you ship abroad?"], "answer": "Only within the EU."},
    )
    assert answer.status_code == 201, answer.text
    retention = api.admin.put(f"/v1/admin/apps/{app_id}/retention", json={"session_ttl_days": 30})
    assert retention.status_code == 200, retention.text
    other_id, other_key = api.new_tenant("bystander")
    api.index(other_key, "policy.md", POLICY)
    other_session = _chat(api, other_key, "Which courier do you ship with?")

    boss_record = add_operator(api, _email("owner"), {app_id: "owner"})
    viewer_record = add_operator(api, _email("viewer"), {app_id: "viewer", other_id: "viewer"})
    boss = sign_in(api, boss_record["email"])
    everything = sign_in(api, console_owner)
    try:
        response = boss.call("DELETE", f"/v1/admin/apps/{app_id}", params={"confirm": "true"})
        assert response.status_code == 200, response.text
        assert response.json() == {"app_id": app_id, "deleted": True}

        # Its key is dead, for reading and for asking.
        refused = api.http.get("/v1/files", headers=api.auth(key))
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "key_revoked"
        assert api.chat(key, "anyone there?").status_code == 401
        # The app is gone from the admin API and from every operator's roles and lists.
        assert api.admin.get(f"/v1/admin/apps/{app_id}").status_code == 404
        assert api.admin.get(f"/v1/admin/apps/{app_id}/keys").status_code == 404
        listed = {a["app_id"] for a in api.admin.get("/v1/admin/apps").json()["apps"]}
        assert app_id not in listed
        assert other_id in listed
        assert boss.call("GET", "/v1/console/me").json()["operator"]["roles"] == {}
        operators = {o["operator_id"]: o for o in api.admin.get("/v1/admin/operators").json()["operators"]}
        assert operators[viewer_record["operator_id"]]["roles"] == {other_id: "viewer"}
        # An owner of every app asking the tenant API about it: there is no such app.
        for path in ("/v1/files", f"/v1/files/{file_id}", "/v1/sessions", "/v1/answers", "/v1/usage"):
            gone = everything.call("GET", path, app=app_id)
            assert gone.status_code == 404, (path, gone.text)
        assert everything.call("GET", f"/console/apps/{app_id}").status_code == 404
        # Again: nothing left to delete.
        again = everything.call("DELETE", f"/v1/admin/apps/{app_id}", params={"confirm": "true"})
        assert again.status_code == 404
        assert boss.call("DELETE", f"/v1/admin/apps/{app_id}", params={"confirm": "true"}).status_code == 403

        # And the services that kept its content keep none of it.
        assert _ask(servers, Ingest.list, FileListQuery(app_id=app_id)).files == []
        assert _ask(servers, Ingest.answer_list, CuratedAnswerQuery(app_id=app_id)).answers == []
        assert _ask(servers, Metering.sessions, SessionQuery(app_id=app_id)).data == []
        for session_id in sessions:
            with pytest.raises(NotFound):
                _ask(servers, Metering.session, SessionLookup(app_id=app_id, session_id=session_id))
        today = datetime.now(UTC).date()
        report = _ask(
            servers, Metering.analytics, AnalyticsQuery(app_id=app_id, start_date=today, end_date=today)
        )
        assert report.totals.messages == 0
        assert report.totals.conversations == 0
        assert report.top_questions == []
        assert _ask(servers, Metering.retention, RetentionQuery(app_id=app_id)).session_ttl_days is None

        [event] = api.admin.get("/v1/admin/audit", params={"app_id": app_id, "action": "app.deleted"}).json()[
            "events"
        ]
        assert event["actor"] == boss_record["operator_id"]
        assert event["detail"]["name"] == "doomed"

        # The other app is as it was.
        assert [
            f["status"] for f in api.http.get("/v1/files", headers=api.auth(other_key)).json()["files"]
        ] == ["ready"]
        assert [s["session_id"] for s in api.sessions(other_key)] == [other_session]
        assert api.chat(other_key, "Which courier do you ship with?").status_code == 200
    finally:
        boss.close()
        everything.close()


def test_overview_charts_and_the_apps_list(api: Api, browser: Browser) -> None:
    name = f"Overview shop {uuid.uuid4().hex[:6]}"
    app_id, key = api.new_tenant(name)
    api.index(key, "policy.md", POLICY)
    for question in ("Which courier do you ship with?", "How long does a parcel take?", "Do you sell hats?"):
        _chat(api, key, question)
    api.wait_usage(key, 3)
    # Analytics trail usage by a rollup's debounce (docs/support.md): the page shows what is counted.
    poll(
        lambda: api.http.get("/v1/analytics", headers=api.auth(key)).json()["totals"]["messages"],
        lambda messages: messages >= 3,
        what="analytics counting the three questions",
    )
    email = add_operator(api, _email("owner"), {app_id: "owner"})["email"]

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    dialogs = accepting_dialogs(page)
    browser_sign_in(page, api.url, email)

    # The apps list: the app with its 30 days' requests.
    page.goto(f"{api.url}/console")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=name))
    expect(row.get_by_role("cell").nth(2)).to_have_text("3")
    assert page_violations(page) == []
    screenshot(page, "apps")

    row.get_by_role("link", name=name).click()
    expect(page).to_have_url(f"{api.url}/console/apps/{app_id}")
    expect(page.get_by_role("link", name="Last 30 days")).to_have_attribute("aria-current", "page")
    requests = page.get_by_role("img", name=re.compile(r"^Requests per day, 30 days, 3 in total, most on "))
    expect(requests).to_be_visible()
    expect(
        page.get_by_role("img", name=re.compile(r"^Tokens per day, 30 days, [\d,]+ in total"))
    ).to_be_visible()
    expect(page.get_by_role("img", name=re.compile(r"^Requests by model: \S+ 3 \(100%\)"))).to_be_visible()
    expect(page.get_by_role("img", name=re.compile(r"^Requests by key: test key 3 \(100%\)"))).to_be_visible()
    expect(
        page.get_by_role("img", name=re.compile(r"^Questions per day, 30 days, 3 in total"))
    ).to_be_visible()
    expect(requests.locator("rect")).to_have_count(1)  # today's bar
    expect(page.get_by_role("link", name="All unanswered questions")).to_have_attribute(
        "href", f"/console/apps/{app_id}/unanswered"
    )
    assert page_violations(page) == []
    screenshot(page, "overview")

    for days in (7, 90):
        page.get_by_role("link", name=f"Last {days} days").click()
        expect(page).to_have_url(f"{api.url}/console/apps/{app_id}?days={days}")
        expect(page.get_by_role("heading", name=f"Usage, last {days} days")).to_be_visible()
        expect(
            page.get_by_role("img", name=re.compile(rf"^Requests per day, {days} days, 3 in total"))
        ).to_be_visible()

    # Rename, by keyboard, then delete, confirming a question that names the app.
    box = page.get_by_role("textbox", name="Name")
    box.fill(f"{name} renamed")
    box.press("Enter")
    expect(page.locator(".app-name")).to_have_text(f"{name} renamed")
    page.get_by_role("button", name="Delete app").click()
    expect(page).to_have_url(f"{api.url}/console")
    assert len(dialogs) == 1
    assert f"“{name} renamed”" in dialogs[0].message
    expect(page.get_by_text("No apps yet.")).to_be_visible()
    assert api.admin.get(f"/v1/admin/apps/{app_id}").status_code == 404
    poll(lambda: api.http.get("/v1/files", headers=api.auth(key)).status_code, lambda s: s == 401)
    page.close()
