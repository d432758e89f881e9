"""Console operators for tests: the instance's first owner, operators with given roles, and an
HTTP client signed in as one of them (cookie + CSRF token), as the console's own script calls."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Dialog, Page, expect
from playwright.sync_api import Error as PlaywrightError

from tests.api import Api
from tests.browser import POLICY, serious_violations
from tests.documents import FILLER, pdf, word

OWNER_EMAIL = "owner@obdal.test"
PASSWORD = "correct horse battery staple"


def ensure_owner(api: Api) -> None:
    """The stack's first owner (set up once per stack, by whichever test comes first)."""
    response = api.http.post(
        "/v1/console/setup",
        json={
            "admin_token": api.admin.headers["authorization"].removeprefix("Bearer "),
            "email": OWNER_EMAIL,
            "password": PASSWORD,
            "name": "Owner",
        },
    )
    assert response.status_code in (201, 409), response.text


def add_operator(api: Api, email: str, roles: dict[str, str], *, password: str = PASSWORD) -> dict[str, Any]:
    response = api.admin.post(
        "/v1/admin/operators", json={"email": email, "password": password, "roles": roles}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@dataclass
class Console:
    """An HTTP client signed in to the console."""

    http: httpx.Client
    csrf: str
    operator: dict[str, Any]

    def call(
        self, method: str, path: str, *, app: str | None = None, csrf: bool = True, **kwargs: Any
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if csrf:
            headers["X-CSRF-Token"] = self.csrf
        if app:
            headers["Obdal-App"] = app
        return self.http.request(method, path, headers=headers, **kwargs)

    def close(self) -> None:
        self.http.close()


def sign_in(api: Api, email: str, password: str = PASSWORD) -> Console:
    http = httpx.Client(base_url=api.url, timeout=30)
    response = http.post("/v1/console/sign-in", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    body = response.json()
    return Console(http=http, csrf=body["csrf_token"], operator=body["operator"])


SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


def browser_sign_in(page: Page, url: str, email: str, password: str = PASSWORD) -> None:
    """Sign in through the console's own form, as a person does."""
    page.goto(f"{url}/console/sign-in")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).not_to_have_text("Sign in")


def accepting_dialogs(page: Page) -> list[Dialog]:
    """The dialogs ``page`` opens from now on, each accepted (the console's confirms say yes)."""
    dialogs: list[Dialog] = []

    def accept(dialog: Dialog) -> None:
        dialogs.append(dialog)
        dialog.accept()

    page.on("dialog", accept)
    return dialogs


def screenshot(page: Page, name: str) -> None:
    """``docs/screenshots/console-<name>.png``, rewritten by every test run (docs/console.md shows them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"console-{name}.png"), full_page=True)


def page_violations(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the whole console page."""
    return serious_violations(page, within="body")


def help_centre(folder: Path) -> list[str]:
    """A shop's help centre in the three formats a support manager has, written to ``folder``: a
    PDF, a Word document and Markdown (which holds tests.browser.POLICY); their file names."""
    documents = {
        "warranty.pdf": pdf([FILLER * 3 + "Every kettle comes with a warranty of two years."]),
        "invoices.docx": word(
            title="Invoices", sections={"Invoices": [FILLER, "Invoices are sent by e-mail."]}
        ),
        "shipping.md": f"# Shipping\n\n{POLICY}\n".encode(),
    }
    for name, content in documents.items():
        (folder / name).write_bytes(content)
    return list(documents)


def choose_files(
    page: Page, trigger: Callable[[], None], files: Sequence[str | Path], *, attempts: int = 3
) -> None:
    """Give ``files`` to the file chooser that ``trigger`` (a click, a key press) opens.

    Chromium now and then drops the chooser a trigger opens: the event never came in one CI run
    (Playwright's tracker and other projects' report the same). A trigger that brought none in 7 s
    is fired again; a control that opens no chooser still fails, after three tries.
    """
    for attempt in range(attempts):
        try:
            with page.expect_file_chooser(timeout=7_000) as chooser:
                trigger()
        except PlaywrightError:
            if attempt == attempts - 1:
                raise
            continue
        chooser.value.set_files([str(f) for f in files])
        return
