"""The console's Documents and Playground pages, in Debian Chromium against the real stack:
upload several formats at once and watch them become answerable, delete one, ask the app in the
playground and see the answer stream in with its source. Plus what must never happen: a file's
name turned into markup, a refused upload without its reason, a viewer changing documents."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Dialog, Locator, Page, expect

from tests.api import Api
from tests.console import (
    OWNER_EMAIL,
    add_operator,
    browser_sign_in,
    choose_files,
    ensure_owner,
    help_centre,
    page_violations,
    screenshot,
    sign_in,
)

READY_S = 90_000  # ms: ingestion of a fresh stack's first documents (models warming up) included


@pytest.fixture
def owner_page(api: Api, browser: Browser) -> Iterator[tuple[Page, list[str]]]:
    """A page signed in as the instance's owner, and the dialogs it showed (each accepted)."""
    ensure_owner(api)
    page = browser.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", on_dialog)
    browser_sign_in(page, api.url, OWNER_EMAIL)
    yield page, dialogs
    page.close()


def _row(page: Page, name: str) -> Locator:
    return page.locator("[data-files] tbody tr").filter(
        has=page.get_by_role("rowheader", name=name, exact=True)
    )


def _upload(page: Page, paths: list[Path]) -> None:
    page.get_by_label("Choose files").set_input_files([str(p) for p in paths])


def test_upload_three_formats_delete_one_and_ask_in_the_playground(
    api: Api, owner_page: tuple[Page, list[str]], tmp_path: Path
) -> None:
    page, dialogs = owner_page
    app_id = api.create_app("documents console")
    documents = help_centre(tmp_path)
    page.goto(f"{api.url}/console/apps/{app_id}/documents")
    expect(page.get_by_text("No documents yet.")).to_be_visible()
    _upload(page, [tmp_path / name for name in documents])
    for name in documents:
        row = _row(page, name)
        expect(row.locator(".badge")).to_have_text("ready", timeout=READY_S)
        expect(row.locator("[data-chunks]")).not_to_have_text("0")
        expect(row.locator("[data-tokens]")).not_to_have_text("0")
    expect(page.get_by_role("status")).to_have_text("3 files: 3 ready, 0 failed.")
    # The server-rendered page shows the same, from GET /v1/files.
    page.reload()
    for name in documents:
        expect(_row(page, name).locator(".badge")).to_have_text("ready")
        expect(_row(page, name).locator("[data-chunks]")).not_to_have_text("0")
    assert page_violations(page) == []
    screenshot(page, "documents")

    page.get_by_role("button", name="Delete warranty.pdf").click()
    expect(_row(page, "warranty.pdf")).to_have_count(0)
    expect(page.get_by_role("status")).to_have_text("Deleted warranty.pdf.")
    assert dialogs == ["Delete warranty.pdf? Chat can no longer cite it."]
    listed = sign_in(api, OWNER_EMAIL)
    names = {f["filename"] for f in listed.call("GET", "/v1/files", app=app_id).json()["files"]}
    listed.close()
    assert names == {"invoices.docx", "shipping.md"}

    page.get_by_role("link", name="Playground").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Playground")
    page.get_by_label("Your question").fill("Which courier do you ship with?")
    page.get_by_role("button", name="Ask").click()
    answer = page.locator(".turn.assistant").last
    expect(answer.locator(".content")).to_contain_text("Zorblax", timeout=30_000)
    expect(answer.locator("ol.sources")).to_contain_text("shipping.md")
    expect(answer.locator("ol.sources")).to_contain_text("score 0.")
    expect(answer).to_contain_text("session sess_")
    expect(page.get_by_role("status")).to_contain_text("Answered")
    first_session = answer.locator(".meta").last.inner_text().rsplit("session ", 1)[1]
    # A follow-up continues the session; a new conversation starts another.
    page.get_by_label("Your question").fill("How long do parcels take to arrive?")
    page.get_by_label("Your question").press("Enter")
    expect(page.locator(".turn.assistant")).to_have_count(2)
    expect(page.locator(".turn.assistant").last).to_contain_text(f"session {first_session}", timeout=30_000)
    assert page_violations(page) == []
    screenshot(page, "playground")
    page.get_by_role("button", name="New conversation").click()
    expect(page.locator(".turn")).to_have_count(0)
    page.get_by_label("Your question").fill("Which courier?")
    page.get_by_role("button", name="Ask").click()
    fresh = page.locator(".turn.assistant").last
    expect(fresh).to_contain_text("session sess_", timeout=30_000)
    assert f"session {first_session}" not in fresh.inner_text()


def test_a_file_name_is_text_and_a_refused_upload_says_why(
    api: Api, owner_page: tuple[Page, list[str]], tmp_path: Path
) -> None:
    page, dialogs = owner_page
    app_id = api.create_app("documents hostile names")
    hostile = "<img src=x onerror=alert(1)>"
    (tmp_path / f"{hostile}.md").write_text("# Opening hours\n\nThe shop opens at nine.\n")
    (tmp_path / "tool.exe").write_bytes(b"MZ\x90\x00\x03\x00\x00\x00" * 64)
    page.goto(f"{api.url}/console/apps/{app_id}/documents")
    # The row shows the local name while it uploads, the stored one after: watch every moment.
    page.evaluate(
        """() => {
            window.markup = [];
            new MutationObserver((changes) => {
                for (const change of changes) for (const node of change.addedNodes) {
                    if (node.nodeType === Node.ELEMENT_NODE && node.matches("img, img *, :has(img)")) {
                        window.markup.push(node.outerHTML);
                    }
                }
            }).observe(document.body, { childList: true, subtree: true });
        }"""
    )
    _upload(page, [tmp_path / f"{hostile}.md", tmp_path / "tool.exe"])
    expect(page.locator("[data-files] tbody tr").filter(has_text="onerror")).to_have_count(1)
    refused = _row(page, "tool.exe")
    expect(refused.locator(".badge")).to_have_text("failed")
    expect(refused.locator(".reason")).to_contain_text("unsupported file type")
    named = page.locator("[data-files] tbody tr").filter(has_text="onerror")
    expect(named.locator(".badge")).to_have_text("ready", timeout=READY_S)
    expect(page.get_by_role("status")).to_have_text("2 files: 1 ready, 1 failed.")
    assert page.evaluate("window.markup") == []
    page.reload()
    expect(page.locator("[data-files] tbody tr").filter(has_text="onerror")).to_have_count(1)
    assert page.locator("img").count() == 0
    assert dialogs == []


def test_a_viewer_reads_the_documents_but_may_not_change_them(api: Api) -> None:
    ensure_owner(api)
    app_id = api.create_app("documents viewer")
    key = api.create_key(app_id)["key"]
    file_id = api.index(key, "hours.md", "The shop opens at nine.")
    add_operator(api, "documents-viewer@obdal.test", {app_id: "viewer"})
    viewer = sign_in(api, "documents-viewer@obdal.test")
    try:
        listed = viewer.call("GET", "/v1/files", app=app_id)
        assert listed.status_code == 200, listed.text
        assert [f["file_id"] for f in listed.json()["files"]] == [file_id]
        upload = viewer.call("POST", "/v1/files", app=app_id, files={"file": ("new.md", b"# New\n\nText.\n")})
        assert upload.status_code == 403, upload.text
        assert upload.json()["error"]["code"] == "role_forbids"
        for path in (f"/v1/files/{file_id}", "/v1/files?confirm=true"):
            deleted = viewer.call("DELETE", path, app=app_id)
            assert deleted.status_code == 403, deleted.text
            assert deleted.json()["error"]["code"] == "role_forbids"
        chat = viewer.call("POST", "/v1/chat", app=app_id, json={"message": "When do you open?"})
        assert chat.status_code == 403, chat.text
        assert viewer.call("GET", "/v1/files", app=app_id).json()["files"][0]["status"] == "ready"
        # The page shows the file and no control that changes anything.
        rendered = viewer.call("GET", f"/console/apps/{app_id}/documents")
        assert rendered.status_code == 200
        assert "hours.md" in rendered.text
        assert "data-pick" not in rendered.text
        assert 'data-method="DELETE"' not in rendered.text
        assert "may not ask" in viewer.call("GET", f"/console/apps/{app_id}/playground").text
    finally:
        viewer.close()
    # An editor's console session uploads through the same route.
    add_operator(api, "documents-editor@obdal.test", {app_id: "editor"})
    editor = sign_in(api, "documents-editor@obdal.test")
    try:
        upload = editor.call("POST", "/v1/files", app=app_id, files={"file": ("new.md", b"# New\n\nText.\n")})
        assert upload.status_code == 202, upload.text
    finally:
        editor.close()


def test_a_folder_a_drop_and_a_replacement(
    api: Api, owner_page: tuple[Page, list[str]], tmp_path: Path
) -> None:
    page, dialogs = owner_page
    app_id = api.create_app("documents folders")
    folder = tmp_path / "handbook"
    (folder / "sub").mkdir(parents=True)
    (folder / "returns.md").write_text("# Returns\n\nReturns are free for thirty days.\n")
    (folder / "sub" / "hours.txt").write_text("The shop opens at nine.\n")
    (folder / ".notes.md").write_text("# Hidden\n\nNot a document.\n")
    page.goto(f"{api.url}/console/apps/{app_id}/documents")
    page.get_by_label("Choose a folder").set_input_files(str(folder))
    for name in ("returns.md", "hours.txt"):
        expect(_row(page, name).locator(".badge")).to_have_text("ready", timeout=READY_S)
    expect(page.get_by_role("status")).to_have_text("2 files: 2 ready, 0 failed.")
    expect(_row(page, ".notes.md")).to_have_count(0)

    # What a drop on the zone delivers (a synthetic drop carries files, not folder entries).
    page.locator("[data-dropzone]").evaluate(
        """zone => {
            const transfer = new DataTransfer();
            transfer.items.add(new File(["# Invoices\\n\\nInvoices come by e-mail.\\n"], "invoices.md"));
            const drop = new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true });
            zone.dispatchEvent(drop);
        }"""
    )
    expect(_row(page, "invoices.md").locator(".badge")).to_have_text("ready", timeout=READY_S)

    replacement = tmp_path / "hours-2027.txt"
    replacement.write_text("From 2027 the shop opens at ten.\n")
    choose_files(page, page.get_by_role("button", name="Replace hours.txt").click, [replacement])
    expect(_row(page, "hours-2027.txt").locator(".badge")).to_have_text("ready", timeout=READY_S)
    file_id = _row(page, "hours-2027.txt").get_attribute("data-file-id")
    owner = sign_in(api, OWNER_EMAIL)
    try:
        listed = owner.call("GET", "/v1/files", app=app_id).json()["files"]
    finally:
        owner.close()
    assert sorted(f["filename"] for f in listed) == ["hours-2027.txt", "invoices.md", "returns.md"]
    assert next(f for f in listed if f["file_id"] == file_id)["version"] == 2

    page.get_by_role("button", name="Delete all documents").click()
    expect(page.get_by_text("No documents yet.")).to_be_visible()
    expect(page.locator("[data-files] tbody tr")).to_have_count(0)
    assert dialogs[-1] == "Delete every document of documents folders? This cannot be undone."
