"""The console's Websites pages in Debian Chromium, against the shared stack and a real help
centre on loopback (tests.website): add a site by keyboard alone and watch it become ready, read
its pages (a hostile title shown as text), sync it again, delete it. Plus what must never happen:
a refused address without its reason or losing what was typed, a viewer offered a control."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect

from tests.api import Api
from tests.console import (
    OWNER_EMAIL,
    accepting_dialogs,
    add_operator,
    browser_sign_in,
    page_violations,
    screenshot,
    sign_in,
)
from tests.website import Website

HOSTILE_TITLE = "<img src=x onerror=alert(1)> Hostile"
HOSTILE_PATH = "/returns/hostile"
SYNC_MS = 60_000  # a first sync indexes every page (models warming up on a fresh stack included)
# A ready source's status, as the pages word it (the age is whatever the clock says by then).
SYNCED = r"synced (just now|1 minute ago)"


@pytest.fixture
def owner_page(api: Api, browser: Browser, console_owner: str) -> Iterator[tuple[Page, list[Dialog]]]:
    """A page signed in as the instance's owner, and the dialogs it opened (each accepted)."""
    page = browser.new_page()
    dialogs = accepting_dialogs(page)
    browser_sign_in(page, api.url, console_owner)
    yield page, dialogs
    page.close()


def _source(api: Api, app_id: str, source_id: str) -> dict[str, Any]:
    owner = sign_in(api, OWNER_EMAIL)
    try:
        response = owner.call("GET", f"/v1/sources/{source_id}", app=app_id)
    finally:
        owner.close()
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _pages(api: Api, app_id: str, source_id: str) -> list[dict[str, Any]]:
    owner = sign_in(api, OWNER_EMAIL)
    try:
        response = owner.call("GET", f"/v1/sources/{source_id}/pages", app=app_id, params={"limit": 200})
    finally:
        owner.close()
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    listed: list[dict[str, Any]] = response.json()["pages"]
    return listed


def test_add_a_website_by_keyboard_read_its_pages_sync_and_delete_it(
    api: Api, owner_page: tuple[Page, list[Dialog]]
) -> None:
    page, dialogs = owner_page
    app_id = api.create_app("websites console")
    with Website(articles_per_topic=2) as site:
        site.add(HOSTILE_PATH, HOSTILE_TITLE, "Hostile titles are shown as text, never as markup.")
        page.goto(f"{api.url}/console/apps/{app_id}/documents")
        page.get_by_role("navigation", name="App").get_by_role("link", name="Websites").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Websites")
        expect(page.get_by_text("No websites yet.")).to_be_visible()

        # Keyboard alone: the skip link, then the form's fields in order.
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
        page.keyboard.press("Enter")
        page.keyboard.press("Tab")
        expect(page.get_by_label("URL")).to_be_focused()
        page.keyboard.type(f"{site.url}/")
        page.keyboard.press("Tab")
        crawl = page.get_by_role("radio", name="Crawl: follow the links from this address")
        expect(crawl).to_be_focused()
        page.keyboard.press("ArrowDown")
        expect(page.get_by_role("radio", name="Sitemap: the pages the site's sitemap lists")).to_be_checked()
        page.keyboard.press("ArrowUp")
        expect(crawl).to_be_checked()
        page.keyboard.press("Tab")
        expect(page.get_by_label("Most pages to read")).to_be_focused()
        page.keyboard.press("Control+A")
        page.keyboard.type("60")
        for field in ("Links deep, when crawling", "Only these paths", "Never these paths", "Re-sync"):
            page.keyboard.press("Tab")
            expect(page.get_by_label(field)).to_be_focused()
        page.keyboard.press("ArrowDown")
        page.keyboard.press("ArrowDown")
        expect(page.get_by_label("Re-sync")).to_have_value("weekly")
        page.keyboard.press("Tab")
        expect(page.get_by_role("button", name="Add website")).to_be_focused()
        page.keyboard.press("Enter")

        added = page.get_by_role("status").filter(has_text="Added")
        expect(added).to_have_text(f"Added {site.url}/. Its first sync has started.")
        expect(added).to_be_focused()
        source_id = page.url.rsplit("added=", 1)[1]
        row = page.locator("[data-sources] tbody tr")
        expect(row).to_have_count(1)
        expect(row.get_by_role("rowheader")).to_have_text(f"{site.url}/")
        expect(row.locator("[data-words]")).to_have_text(
            re.compile(r"^Ready: \d+ pages, " + SYNCED + "$"), timeout=SYNC_MS
        )
        source = _source(api, app_id, source_id)
        assert source["status"] == "ready"
        assert (source["mode"], source["max_pages"], source["resync"]) == ("crawl", 60, "weekly")
        # Every public page of the help centre, the hostile one among them, and nothing else indexed.
        public = {f"{site.url}{path}" for path in site.public()} | {f"{site.url}{HOSTILE_PATH}"}
        stats = source["last_sync"]
        assert stats["indexed"] == len(public) == 21
        expect(row.locator("[data-words]")).to_have_text(
            re.compile(rf"^Ready: {source['pages']} pages, {SYNCED}$")
        )
        expect(page.get_by_role("status").filter(has_text=site.url).last).to_have_text(
            re.compile(rf"^{re.escape(site.url)}/: Ready: {source['pages']} pages, {SYNCED}\.$")
        )
        expect(row.locator("[data-figures]")).to_have_text(
            f"{stats['found']} found, {stats['indexed']} indexed, {stats['unchanged']} unchanged,"
            f" {stats['duplicate']} duplicates, {stats['failed']} failed, {stats['blocked']} blocked,"
            f" {stats['removed']} removed ({stats['requests']} requests)"
        )
        expect(row.locator("[data-next-sync]")).to_contain_text(" UTC")
        assert page_violations(page) == []
        screenshot(page, "websites")

        page.get_by_role("link", name=f"{site.url}/").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Website")
        expect(page.locator("[data-words]")).to_have_text(
            re.compile(rf"^Ready: {source['pages']} pages, {SYNCED}$")
        )
        table = page.locator("[data-pages-table]")
        hostile = table.get_by_role("link", name=HOSTILE_TITLE)
        expect(hostile).to_have_count(1)
        expect(hostile).to_contain_text(HOSTILE_TITLE)
        assert hostile.get_attribute("href") == f"{site.url}{HOSTILE_PATH}"
        assert hostile.get_attribute("rel") == "noopener noreferrer"
        assert page.locator("main img").count() == 0
        indexed = table.locator("tbody tr").filter(has=page.locator(".badge", has_text="indexed"))
        expect(indexed).to_have_count(len(public))
        hrefs = indexed.locator("th a").evaluate_all("links => links.map(l => l.getAttribute('href'))")
        assert set(hrefs) == public
        assert page_violations(page) == []
        screenshot(page, "website")

        # Sync now: disabled and explained while it runs, every page unchanged after it.
        before = len(site.requests)
        sync = page.get_by_role("button", name="Sync now")
        sync.click()
        expect(sync).to_be_disabled()
        expect(
            page.get_by_text("A sync is under way: Sync now is available again when it ends.")
        ).to_be_visible()
        expect(sync).to_be_enabled(timeout=SYNC_MS)
        again = _source(api, app_id, source_id)
        assert again["last_sync"]["indexed"] == 0
        # Nothing re-indexed: every page found was unchanged or a duplicate (blocked ones are not fetched).
        resynced = again["last_sync"]
        assert (resynced["failed"], resynced["blocked"]) == (0, 2)
        assert resynced["unchanged"] + resynced["duplicate"] == resynced["found"]
        assert resynced["unchanged"] >= len(public)
        assert again["last_sync_at"] > source["last_sync_at"]
        assert len(site.requests) > before
        expect(page.locator('[data-stat="unchanged"]')).to_have_text(str(resynced["unchanged"]))
        expect(page.locator('[data-stat="indexed"]')).to_have_text("0")
        expect(page.get_by_role("status").filter(has_text="Ready")).to_have_text(
            re.compile(rf"^Ready: {again['pages']} pages, synced just now\.$")
        )

        # The table was read again when the sync ended: each page's state as the API has it now.
        rows = table.locator("tbody tr")
        shown = rows.evaluate_all(
            "rows => rows.map(r => [r.querySelector('th a').getAttribute('href'),"
            " r.querySelector('.badge').textContent])"
        )
        assert sorted(map(tuple, shown)) == sorted(
            (p["url"], p["status"]) for p in _pages(api, app_id, source_id)
        )
        page.get_by_role("button", name="Delete website").click()
        expect(page.get_by_text("No websites yet.")).to_be_visible()
        assert [d.type for d in dialogs] == ["confirm"]  # never an injected alert
        assert dialogs[0].message == (
            f"Delete the website {site.url}/ and its {again['pages']} pages? Chat can no longer cite them."
        )
    owner = sign_in(api, OWNER_EMAIL)
    try:
        assert owner.call("GET", f"/v1/sources/{source_id}", app=app_id).status_code == 404
        left = owner.call("GET", "/v1/files", app=app_id).json()["files"]
        assert left == [], "deleting the website left documents of it"
    finally:
        owner.close()


def test_a_refused_address_says_why_and_keeps_what_was_typed(
    api: Api, owner_page: tuple[Page, list[Dialog]]
) -> None:
    page, dialogs = owner_page
    app_id = api.create_app("websites refused")
    owner = sign_in(api, OWNER_EMAIL)
    try:
        refused = owner.call("POST", "/v1/sources", app=app_id, json={"url": "http://10.0.0.1/"})
    finally:
        owner.close()
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "private_address"
    message = refused.json()["error"]["message"]
    page.goto(f"{api.url}/console/apps/{app_id}/websites")
    page.get_by_label("URL").fill("http://10.0.0.1/")
    page.get_by_label("Most pages to read").fill("7")
    page.get_by_label("Never these paths").fill("/blog/*")
    page.get_by_role("button", name="Add website").click()
    alert = page.get_by_role("alert")
    expect(alert).to_have_text(message)
    expect(alert).to_be_focused()
    expect(page.get_by_label("URL")).to_have_value("http://10.0.0.1/")
    expect(page.get_by_label("Most pages to read")).to_have_value("7")
    expect(page.get_by_label("Never these paths")).to_have_value("/blog/*")
    expect(page.get_by_text("No websites yet.")).to_be_visible()
    # A custom schedule the API refuses names the field, and keeps the expression typed.
    page.get_by_label("URL").fill("https://help.example.com/")
    page.get_by_label("Re-sync").select_option("custom")
    page.get_by_label("Cron expression").fill("every tuesday")
    page.get_by_role("button", name="Add website").click()
    expect(alert).to_contain_text("resync")
    expect(page.get_by_label("Cron expression")).to_have_value("every tuesday")
    assert dialogs == []


def _add_site(api: Api, email: str, app_id: str, site: Website) -> str:
    """``site`` added as a source of the app through the API, by the operator ``email``."""
    owner = sign_in(api, email)
    try:
        created = owner.call("POST", "/v1/sources", app=app_id, json={"url": f"{site.url}/"})
        assert created.status_code == 202, created.text
        return str(created.json()["source_id"])
    finally:
        owner.close()


def test_a_failed_sync_says_why_in_words(api: Api, owner_page: tuple[Page, list[Dialog]]) -> None:
    page, _ = owner_page
    app_id = api.create_app("websites failed")
    # A robots.txt answering 5xx: the site cannot say what may be crawled, so nothing is.
    with Website(articles_per_topic=1, robots_status=503) as site:
        source_id = _add_site(api, OWNER_EMAIL, app_id, site)
        page.goto(f"{api.url}/console/apps/{app_id}/websites/{source_id}")
        expect(page.locator("[data-words]")).to_have_text(re.compile(r"^Failed: "), timeout=SYNC_MS)
        source = _source(api, app_id, source_id)
        assert source["status"] == "failed"
        assert source["error"]
        expect(page.locator("[data-words]")).to_have_text(f"Failed: {source['error']}")
        expect(page.get_by_role("button", name="Sync now")).to_be_enabled()
        # The live region announces the changes the page sees (none if the sync had failed before
        # the page loaded, which a fast run does): a sync started here fails again, and says so.
        page.get_by_role("button", name="Sync now").click()
        expect(page.get_by_role("status").filter(has_text="Failed")).to_have_text(
            f"Failed: {source['error']}.", timeout=SYNC_MS
        )
        page.get_by_role("link", name="All websites").click()
        expect(page.locator("[data-sources] [data-words]")).to_have_text(f"Failed: {source['error']}")


def test_a_viewer_pages_through_a_website_but_has_no_control(
    api: Api, browser: Browser, console_owner: str
) -> None:
    app_id = api.create_app("websites viewer")
    # 62 public pages, the duplicates and the blocked ones: more than one page of the table (50).
    with Website(articles_per_topic=9) as site:
        source_id = _add_site(api, console_owner, app_id, site)
        add_operator(api, "websites-viewer@obdal.test", {app_id: "viewer"})
        page = browser.new_page()
        try:
            browser_sign_in(page, api.url, "websites-viewer@obdal.test")
            page.goto(f"{api.url}/console/apps/{app_id}/websites")
            row = page.locator("[data-sources] tbody tr")
            expect(row.locator("[data-words]")).to_have_text(
                re.compile(r"^Ready: \d+ pages, " + SYNCED + "$"), timeout=SYNC_MS
            )
            expect(page.get_by_role("heading", name="Add a website")).to_have_count(0)
            expect(page.locator("form")).to_have_count(0)
            listed = _pages(api, app_id, source_id)
            assert len(listed) > 50
            row.get_by_role("link", name=f"{site.url}/").click()
            rows = page.locator("[data-pages-table] tbody tr")
            expect(rows).to_have_count(50)
            expect(page.get_by_role("button", name="Sync now")).to_have_count(0)
            expect(page.get_by_role("button", name="Delete website")).to_have_count(0)
            assert page_violations(page) == []
            links = "links => links.map(l => l.getAttribute('href'))"
            first = rows.locator("th a").evaluate_all(links)
            page.get_by_role("link", name="Next page").click()
            expect(rows).to_have_count(len(listed) - 50)
            expect(page.get_by_role("link", name="Next page")).to_have_count(0)
            rest = rows.locator("th a").evaluate_all(links)
            assert sorted(first + rest) == sorted(p["url"] for p in listed)
            page.get_by_role("link", name="First page").click()
            expect(rows).to_have_count(50)
        finally:
            page.close()
        viewer = sign_in(api, "websites-viewer@obdal.test")
        try:
            for method, path in (
                ("POST", f"/v1/sources/{source_id}/sync"),
                ("DELETE", f"/v1/sources/{source_id}"),
            ):
                response = viewer.call(method, path, app=app_id)
                assert response.status_code == 403, response.text
                assert response.json()["error"]["code"] == "role_forbids"
        finally:
            viewer.close()
