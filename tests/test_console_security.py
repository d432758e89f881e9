"""The console's security boundary, attacked through real servers: roles per app enforced by the
API for cookie sessions, CSRF, session fixation, replay after sign-out, sessions ended by a
password change or a removal, brute-force sign-in, expiry, and names rendered inert."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import msgspec
import nats
import pytest
from playwright.sync_api import Dialog, expect

from obdal.servers import free_port
from obdal_common.ids import new_id, new_secret
from obdal_common.messaging import key_value
from obdal_common.schemas import OperatorRecord
from obdal_gateway.console_sessions import COOKIE, ConsoleSessions
from tests.api import Api, poll
from tests.browser import chromium
from tests.conftest import BIN, Servers, own_bus, start_process, wait_http
from tests.console import PASSWORD, Console, add_operator, browser_sign_in, ensure_owner, sign_in

EVIL = "http://evil.example"
ROLES = ("viewer", "editor", "owner", "other", "every")


def unique(what: str) -> str:
    return f"{what}-{uuid.uuid4().hex[:10]}@obdal.test"


def refused(response: httpx.Response, status: int, *codes: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] in codes, response.text


def cookie_of(response: httpx.Response) -> str:
    """The console cookie's value that ``response`` sets."""
    found = [c for c in response.headers.get_list("set-cookie") if c.startswith(f"{COOKIE}=")]
    assert len(found) == 1, response.headers
    return found[0].split(";", 1)[0].removeprefix(f"{COOKIE}=").strip('"')


def with_cookie(url: str, value: str) -> httpx.Client:
    """A client presenting ``value`` as the console cookie (as a thief or a planted cookie would)."""
    return httpx.Client(base_url=url, timeout=30, headers={"Cookie": f"{COOKIE}={value}"})


# --- the shared stack: an app, its operators in every role, each signed in -------------------


@dataclass
class World:
    api: Api
    app: str  # the app every role is about
    spare: str  # a second app with the same roles, whose files "delete all" erases
    other_app: str  # the app of "other", who has no role on `app`
    key: str  # a secret key of `app`
    spare_key: str
    kept_file: str  # a file of `app` no test deletes
    operators: dict[str, dict[str, Any]]
    consoles: dict[str, Console]


@pytest.fixture(scope="module")
def world(api: Api) -> Iterator[World]:
    ensure_owner(api)
    app = api.create_app("roles")
    spare = api.create_app("roles-spare")
    other_app = api.create_app("roles-other")
    key = str(api.create_key(app)["key"])
    spare_key = str(api.create_key(spare)["key"])
    kept_file = api.index(key, "kept.md", "Kept\n\nThis file is never deleted by the role table.")
    api.index(spare_key, "spare.md", "Spare\n\nA file that only an editor's delete-all erases.")
    roles = {
        "viewer": {app: "viewer", spare: "viewer"},
        "editor": {app: "editor", spare: "editor"},
        "owner": {app: "owner", spare: "owner"},
        "other": {other_app: "owner"},
        "every": {"*": "owner"},
    }
    operators = {role: add_operator(api, unique(role), r) for role, r in roles.items()}
    consoles = {role: sign_in(api, o["email"]) for role, o in operators.items()}
    try:
        yield World(api, app, spare, other_app, key, spare_key, kept_file, operators, consoles)
    finally:
        for console in consoles.values():
            console.close()


def file_exists(w: World, file_id: str) -> bool:
    response = w.api.http.get(f"/v1/files/{file_id}", headers=w.api.auth(w.key))
    assert response.status_code in (200, 404), response.text
    return response.status_code == 200


def spare_files(w: World) -> int:
    response = w.api.http.get("/v1/files", headers=w.api.auth(w.spare_key))
    assert response.status_code == 200, response.text
    return len(response.json()["files"])


Action = Callable[[World, Console, bool], httpx.Response]
# The status each role gets (``other`` has a role on another app only; ``every`` owns every app).
READER = {"viewer": 200, "editor": 200, "owner": 200, "other": 403, "every": 200}
EDITOR = {"viewer": 403, "editor": 200, "owner": 200, "other": 403, "every": 200}
OWNER = {"viewer": 403, "editor": 403, "owner": 200, "other": 403, "every": 200}


def _with(table: dict[str, int], ok: int) -> dict[str, int]:
    return {role: ok if status == 200 else status for role, status in table.items()}


def upload(w: World, c: Console, allowed: bool) -> httpx.Response:
    text = f"Up\n\nUploaded by a console, {uuid.uuid4()}.".encode()
    return c.call("POST", "/v1/files", app=w.app, files={"file": ("up.md", text)})


def delete_file(w: World, c: Console, allowed: bool) -> httpx.Response:
    file_id = (
        w.api.index(w.key, "doomed.md", f"Doomed\n\nA file to delete, {uuid.uuid4()}.")
        if allowed
        else w.kept_file
    )
    response = c.call("DELETE", f"/v1/files/{file_id}", app=w.app)
    assert file_exists(w, file_id) is not allowed
    return response


def delete_all_files(w: World, c: Console, allowed: bool) -> httpx.Response:
    before = spare_files(w)
    response = c.call("DELETE", "/v1/files", app=w.spare, params={"confirm": "true"})
    if allowed:
        assert spare_files(w) == 0
    else:
        assert spare_files(w) == before
    return response


def revoke_key(w: World, c: Console, allowed: bool) -> httpx.Response:
    created = w.api.create_key(w.app, name="to revoke")
    response = c.call("DELETE", f"/v1/admin/keys/{created['key_id']}")
    works = w.api.http.get("/v1/files", headers=w.api.auth(created["key"])).status_code == 200
    assert works is not allowed
    return response


def put_chat(w: World, c: Console, allowed: bool) -> httpx.Response:
    return c.call("PUT", f"/v1/admin/apps/{w.app}/chat", json={"temperature": 0.3})


def put_retention(w: World, c: Console, allowed: bool) -> httpx.Response:
    return c.call("PUT", f"/v1/admin/apps/{w.app}/retention", json={"session_ttl_days": 400})


def add_an_operator(w: World, c: Console, allowed: bool) -> httpx.Response:
    body = {"email": unique("added"), "password": PASSWORD, "roles": {w.app: "viewer"}}
    return c.call("POST", "/v1/admin/operators", json=body)


def get(path: str, *, tenant: bool = False) -> Action:
    def action(w: World, c: Console, allowed: bool) -> httpx.Response:
        return c.call("GET", path.format(app=w.app), app=w.app if tenant else None)

    return action


ACTIONS: list[tuple[str, Action, dict[str, int]]] = [
    ("list files", get("/v1/files", tenant=True), READER),
    ("upload a file", upload, _with(EDITOR, 202)),
    ("delete a file", delete_file, EDITOR),
    ("delete all files", delete_all_files, EDITOR),
    ("read usage", get("/v1/usage", tenant=True), READER),
    ("list sessions", get("/v1/sessions", tenant=True), READER),
    # No such session: 404 shows the role let the request through to its handler.
    ("read a session", get("/v1/sessions/no-such-session", tenant=True), _with(READER, 404)),
    (
        "delete a session",
        lambda w, c, _: c.call("DELETE", "/v1/sessions/no-such-session", app=w.app),
        _with(OWNER, 404),
    ),
    ("erase an end user", lambda w, c, _: c.call("DELETE", "/v1/users/someone-1", app=w.app), OWNER),
    ("list keys", get("/v1/admin/apps/{app}/keys"), EDITOR),
    (
        "create a key",
        lambda w, c, _: c.call("POST", f"/v1/admin/apps/{w.app}/keys", json={"name": "console"}),
        _with(EDITOR, 201),
    ),
    ("revoke a key", revoke_key, EDITOR),
    ("read chat settings", get("/v1/admin/apps/{app}/chat"), READER),
    ("put chat settings", put_chat, EDITOR),
    ("read retention", get("/v1/admin/apps/{app}/retention"), READER),
    ("put retention", put_retention, EDITOR),
    ("read the audit log", get("/v1/admin/audit?app_id={app}"), READER),
    (
        "create a curated answer",
        lambda w, c, _: c.call(
            "POST", "/v1/answers", app=w.app, json={"questions": ["Who?"], "answer": "Us."}
        ),
        _with(EDITOR, 201),
    ),
    ("list operators", get("/v1/admin/operators"), dict.fromkeys(ROLES, 200)),
    ("add an operator", add_an_operator, _with(OWNER, 201)),
    (
        "create an app",
        lambda w, c, _: c.call("POST", "/v1/admin/apps", json={"name": "by console"}),
        {"viewer": 403, "editor": 403, "owner": 403, "other": 403, "every": 201},
    ),
]


@pytest.mark.parametrize(
    ("action", "role"),
    [(name, role) for name, _, _ in ACTIONS for role in ROLES],
)
def test_role_table(world: World, action: str, role: str) -> None:
    do, table = next((do, table) for name, do, table in ACTIONS if name == action)
    expected = table[role]
    response = do(world, world.consoles[role], expected < 400)
    assert response.status_code == expected, f"{action} as {role}: {response.text}"
    if expected == 403:
        assert response.json()["error"]["code"] in ("role_forbids", "not_an_operator_of_app")
    if role == "other" and expected == 403 and action != "add an operator":
        # Their cookie is good, on another app: refused for having no role on this one.
        assert response.json()["error"]["code"] == "not_an_operator_of_app", response.text


def test_a_viewer_cannot_delete_a_file_nor_an_operator_of_another_app_touch_this_one(world: World) -> None:
    viewer, other = world.consoles["viewer"], world.consoles["other"]
    refused(viewer.call("DELETE", f"/v1/files/{world.kept_file}", app=world.app), 403, "role_forbids")
    refused(other.call("GET", "/v1/files", app=world.app), 403, "not_an_operator_of_app")
    refused(other.call("GET", f"/v1/admin/apps/{world.app}"), 403, "not_an_operator_of_app")
    refused(other.call("GET", f"/v1/admin/audit?app_id={world.app}"), 403, "not_an_operator_of_app")
    refused(other.call("GET", "/v1/admin/audit"), 403, "not_an_operator_of_app")  # all apps' log
    # And the other way round: this app's owner on the other app.
    refused(
        world.consoles["owner"].call("GET", "/v1/files", app=world.other_app), 403, "not_an_operator_of_app"
    )
    assert other.call("GET", "/v1/files", app=world.other_app).status_code == 200
    assert file_exists(world, world.kept_file)
    # The operators list shows "other" none of this app's operators, and the apps list none of its apps.
    listed = {o["operator_id"] for o in other.call("GET", "/v1/admin/operators").json()["operators"]}
    assert world.operators["viewer"]["operator_id"] not in listed
    apps = {a["app_id"] for a in other.call("GET", "/v1/admin/apps").json()["apps"]}
    assert apps == {world.other_app}


def test_a_console_request_names_its_app(world: World) -> None:
    viewer = world.consoles["viewer"]
    refused(viewer.call("GET", "/v1/files"), 400, "app_required")
    refused(viewer.call("GET", "/v1/files", app="not-an-app"), 400, "invalid_app_id")
    # A GET may name it in the query (a download link); a request that changes something may not.
    assert viewer.call("GET", "/v1/files", params={"app_id": world.app}).status_code == 200
    editor = world.consoles["editor"]
    refused(
        editor.call("DELETE", f"/v1/files/{world.kept_file}", params={"app_id": world.app}),
        400,
        "app_required",
    )
    assert file_exists(world, world.kept_file)
    # An owner of every app, on an app that does not exist.
    refused(world.consoles["every"].call("GET", "/v1/files", app=new_id("app")), 404, "app_not_found")


# --- attacks ---------------------------------------------------------------------------------


def keys_of(w: World) -> int:
    return len(w.api.admin.get(f"/v1/admin/apps/{w.app}/keys").json()["keys"])


def test_csrf_state_changes_need_the_token_and_the_same_origin(world: World) -> None:
    editor = world.consoles["editor"]
    before = keys_of(world)
    create = f"/v1/admin/apps/{world.app}/keys"
    attempts = [
        editor.call("POST", create, csrf=False, json={"name": "csrf"}),
        editor.call("POST", create, csrf=False, headers={"X-CSRF-Token": "x" * 43}, json={"name": "csrf"}),
        editor.call("POST", create, headers={"Origin": EVIL}, json={"name": "csrf"}),
        editor.call("POST", create, headers={"Origin": "null"}, json={"name": "csrf"}),
        editor.call("PUT", f"/v1/admin/apps/{world.app}/chat", csrf=False, json={"temperature": 1.9}),
        editor.call("DELETE", f"/v1/files/{world.kept_file}", app=world.app, csrf=False),
        editor.call("DELETE", f"/v1/files/{world.kept_file}", app=world.app, headers={"Origin": EVIL}),
        editor.call("POST", "/v1/console/sign-out", csrf=False),
        editor.call(
            "POST",
            "/v1/console/password",
            csrf=False,
            json={"current_password": PASSWORD, "new_password": "x" * 20},
        ),
    ]
    for response in attempts:
        refused(response, 403, "csrf_failed")
    # Nothing changed: no key, the settings, the file, the session and the password as they were.
    assert keys_of(world) == before
    assert world.api.admin.get(f"/v1/admin/apps/{world.app}/chat").json()["temperature"] != 1.9
    assert file_exists(world, world.kept_file)
    assert editor.call("GET", "/v1/console/me").status_code == 200
    # The gateway's own origin, with the token, is let through.
    own = editor.call("POST", create, headers={"Origin": world.api.url}, json={"name": "same origin"})
    assert own.status_code == 201, own.text
    assert keys_of(world) == before + 1


def test_sign_in_and_setup_from_another_site_are_refused(world: World) -> None:
    email = world.operators["viewer"]["email"]
    response = world.api.http.post(
        "/v1/console/sign-in", headers={"Origin": EVIL}, json={"email": email, "password": PASSWORD}
    )
    refused(response, 403, "csrf_failed")
    assert COOKIE not in response.headers.get("set-cookie", "")
    body = {"admin_token": "whatever", "email": unique("evil"), "password": PASSWORD}
    refused(world.api.http.post("/v1/console/setup", headers={"Origin": EVIL}, json=body), 403, "csrf_failed")


def test_the_cookie_is_httponly_strict_and_not_readable_cross_site(world: World) -> None:
    http = httpx.Client(base_url=world.api.url, timeout=30)
    try:
        email = world.operators["viewer"]["email"]
        response = http.post("/v1/console/sign-in", json={"email": email, "password": PASSWORD})
        assert response.status_code == 200, response.text
        header = response.headers["set-cookie"]
        attributes = {a.strip().split("=")[0].lower(): a.strip() for a in header.split(";")[1:]}
        assert "httponly" in attributes, header
        assert attributes["samesite"].lower() == "samesite=strict", header
        assert attributes["path"] == "Path=/", header
        assert "secure" not in attributes, header  # plain HTTP: a Secure cookie would never come back
        assert int(attributes["max-age"].split("=")[1]) == 12 * 3600, header
        # Another site's script cannot read the CSRF token from /me (no CORS for it).
        me = http.get("/v1/console/me", headers={"Origin": EVIL})
        assert me.status_code == 200
        assert me.headers.get("access-control-allow-origin") in (None, ""), me.headers
        assert "access-control-allow-credentials" not in me.headers
    finally:
        http.close()


def test_a_planted_cookie_is_refused_and_sign_in_mints_a_new_one(world: World) -> None:
    victim = world.operators["viewer"]
    planted_values = [f"{new_id('op')}.{new_secret(43)}", f"{victim['operator_id']}.{new_secret(43)}"]
    for planted in planted_values:
        with with_cookie(world.api.url, planted) as http:
            refused(http.get("/v1/console/me"), 401, "console_session_ended")
            refused(http.get("/v1/files", headers={"Obdal-App": world.app}), 401, "console_session_ended")
            refused(http.get(f"/v1/admin/apps/{world.app}/chat"), 401, "console_session_ended")
    # The victim signs in with the planted cookie in their browser: the gateway issues its own.
    planted = planted_values[1]
    with with_cookie(world.api.url, planted) as http:
        response = http.post("/v1/console/sign-in", json={"email": victim["email"], "password": PASSWORD})
        assert response.status_code == 200, response.text
        issued = cookie_of(response)
    assert issued != planted
    assert issued.startswith(f"{victim['operator_id']}.")
    with with_cookie(world.api.url, planted) as http:
        refused(http.get("/v1/console/me"), 401, "console_session_ended")
    with with_cookie(world.api.url, issued) as http:
        assert http.get("/v1/console/me").json()["operator"]["operator_id"] == victim["operator_id"]


def test_a_cookie_replayed_after_sign_out_is_refused(world: World) -> None:
    console = sign_in(world.api, world.operators["viewer"]["email"])
    stolen = console.http.cookies[COOKIE]
    assert console.call("POST", "/v1/console/sign-out").status_code == 200
    console.close()
    with with_cookie(world.api.url, stolen) as thief:
        refused(thief.get("/v1/console/me"), 401, "console_session_ended")
        refused(thief.get("/v1/files", headers={"Obdal-App": world.app}), 401, "console_session_ended")
        refused(thief.get("/v1/sessions", params={"app_id": world.app}), 401, "console_session_ended")
        refused(thief.get(f"/v1/admin/apps/{world.app}/retention"), 401, "console_session_ended")


def test_signing_in_again_ends_the_browsers_previous_session(world: World) -> None:
    console = sign_in(world.api, world.operators["viewer"]["email"])
    before = console.http.cookies[COOKIE]
    again = console.http.post(
        "/v1/console/sign-in", json={"email": world.operators["viewer"]["email"], "password": PASSWORD}
    )
    assert again.status_code == 200, again.text
    assert console.http.cookies[COOKIE] != before
    with with_cookie(world.api.url, before) as old:
        refused(old.get("/v1/console/me"), 401, "console_session_ended")
    # Signing out of an ended session still clears the cookie, and says so.
    with with_cookie(world.api.url, before) as old:
        out = old.post("/v1/console/sign-out")
        assert out.status_code == 200, out.text
        assert 'obdal_console=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]
    console.close()


def test_a_password_change_ends_every_other_session(api: Api, world: World) -> None:
    email, new_password = unique("changer"), "a brand new passphrase"
    add_operator(api, email, {world.app: "viewer"})
    first, second = sign_in(api, email), sign_in(api, email)
    try:
        old_cookie = first.http.cookies[COOKIE]
        wrong = first.call(
            "POST",
            "/v1/console/password",
            json={"current_password": "not it at all", "new_password": new_password},
        )
        refused(wrong, 403, "invalid_credentials")
        assert second.call("GET", "/v1/console/me").status_code == 200  # a refused change ends nothing
        short = first.call(
            "POST", "/v1/console/password", json={"current_password": PASSWORD, "new_password": "short"}
        )
        refused(short, 400, "password_too_short")
        changed = first.call(
            "POST", "/v1/console/password", json={"current_password": PASSWORD, "new_password": new_password}
        )
        assert changed.status_code == 200, changed.text
        assert cookie_of(changed) != old_cookie
        # The changing client has a new session, with a new CSRF token, that works.
        first.csrf = changed.json()["csrf_token"]
        assert first.call("GET", "/v1/console/me").status_code == 200
        assert first.call("GET", "/v1/files", app=world.app).status_code == 200
        refused(second.call("GET", "/v1/console/me"), 401, "console_session_ended")
        refused(second.call("GET", "/v1/files", app=world.app), 401, "console_session_ended")
        with with_cookie(api.url, old_cookie) as thief:
            refused(thief.get("/v1/console/me"), 401, "console_session_ended")
        old = api.http.post("/v1/console/sign-in", json={"email": email, "password": PASSWORD})
        refused(old, 401, "invalid_credentials")
        sign_in(api, email, new_password).close()
    finally:
        first.close()
        second.close()


def test_removing_an_operator_ends_their_sessions_at_once(api: Api, world: World) -> None:
    email = unique("leaver")
    operator = add_operator(api, email, {world.app: "editor"})
    console = sign_in(api, email)
    try:
        assert console.call("GET", "/v1/files", app=world.app).status_code == 200
        removed = api.admin.delete(f"/v1/admin/operators/{operator['operator_id']}")
        assert removed.status_code == 200, removed.text
        refused(console.call("GET", "/v1/console/me"), 401, "console_session_ended")
        refused(console.call("GET", "/v1/files", app=world.app), 401, "console_session_ended")
        refused(
            console.call("POST", f"/v1/admin/apps/{world.app}/keys", json={"name": "gone"}),
            401,
            "console_session_ended",
        )
        refused(
            api.http.post("/v1/console/sign-in", json={"email": email, "password": PASSWORD}),
            401,
            "invalid_credentials",
        )
    finally:
        console.close()


def audit_events(api: Api, **params: str) -> list[dict[str, Any]]:
    response = api.admin.get("/v1/admin/audit", params={"limit": "200", **params})
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def test_console_actions_are_audited_with_the_operator_as_actor(api: Api, world: World) -> None:
    editor = world.consoles["editor"]
    editor_id = world.operators["editor"]["operator_id"]
    created = editor.call("POST", f"/v1/admin/apps/{world.app}/keys", json={"name": "audited"})
    assert created.status_code == 201, created.text
    key_id = created.json()["key_id"]
    upload = editor.call(
        "POST", "/v1/answers", app=world.app, json={"questions": ["Audited?"], "answer": "Yes."}
    )
    assert upload.status_code == 201, upload.text
    failed = api.http.post("/v1/console/sign-in", json={"email": unique("nobody"), "password": "wrong"})
    refused(failed, 401, "invalid_credentials")

    def found(action: str, target: str | None = None, **params: str) -> list[dict[str, Any]]:
        return poll(
            lambda: [
                e
                for e in audit_events(api, action=action, **params)
                if target is None or e.get("target") == target
            ],
            bool,
            what=f"audit event {action}",
        )

    assert [e["actor"] for e in found("key.created", key_id, app_id=world.app)] == [editor_id]
    answers = found("answer.created", upload.json()["answer_id"], app_id=world.app)
    assert [e["actor"] for e in answers] == [editor_id]
    assert editor_id in {e["actor"] for e in found("console.signed_in")}
    assert found("console.sign_in_failed")


# --- a gateway of the test's own: first run, the cookie under TLS, brute force ------------------


@dataclass
class Lone:
    url: str
    admin_token: str
    api: Api


@pytest.fixture(scope="module")
def lone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lone]:
    """A gateway alone on a bus of its own, with a low sign-in throttle and Secure cookies."""
    base = tmp_path_factory.mktemp("console-lone")
    with own_bus(base) as bus:
        port = free_port()
        token = "lone-console-admin-token"
        env = bus.env(
            port=port,
            admin_token=token,
            OBDAL_SIGNIN_FAILURES_PER_ACCOUNT="3",
            OBDAL_SIGNIN_FAILURES_PER_IP="10",
            OBDAL_SIGNIN_WINDOW_MINUTES="1",
            OBDAL_CONSOLE_SECURE_COOKIE="true",
        )
        gateway = start_process([str(BIN / "obdal-gateway")], env, base / "gateway.log")
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{url}/v1/status/live", gateway)
            yield Lone(url=url, admin_token=token, api=Api(url, token))
        finally:
            assert gateway.stop() == 0, gateway.log()


def lone_sign_in(lone: Lone, email: str, password: str = PASSWORD) -> httpx.Response:
    return lone.api.http.post("/v1/console/sign-in", json={"email": email, "password": password})


def test_first_run_setup_then_brute_force_is_throttled(lone: Lone) -> None:
    owner = unique("first-owner")
    setup = {"email": owner, "password": PASSWORD, "name": "First"}
    refused(
        lone.api.http.post("/v1/console/setup", json={**setup, "admin_token": "wrong"}),
        401,
        "invalid_admin_token",
    )
    created = lone.api.http.post("/v1/console/setup", json={**setup, "admin_token": lone.admin_token})
    assert created.status_code == 201, created.text
    assert created.json()["operator"]["roles"] == {"*": "owner"}
    header = created.headers["set-cookie"]
    assert re.search(r";\s*Secure\b", header, re.IGNORECASE), header  # OBDAL_CONSOLE_SECURE_COOKIE
    assert re.search(r"SameSite=Strict", header, re.IGNORECASE), header
    again = {**setup, "email": unique("second-owner"), "admin_token": lone.admin_token}
    refused(lone.api.http.post("/v1/console/setup", json=again), 409, "setup_done")
    # The Secure cookie is a session all the same (a TLS proxy would carry it back).
    with with_cookie(lone.url, cookie_of(created)) as browser:
        assert browser.get("/v1/console/me").json()["operator"]["email"] == owner

    target, bystander, racer, keeper = (unique(n) for n in ("target", "bystander", "racer", "keeper"))
    for email in (target, bystander, racer, keeper):
        add_operator(lone.api, email, {"*": "viewer"})

    # An unknown e-mail and a wrong password get the same answer.
    unknown = lone_sign_in(lone, unique("nobody"), "wrong password")
    wrong = lone_sign_in(lone, target, "wrong password")
    refused(unknown, 401, "invalid_credentials")
    refused(wrong, 401, "invalid_credentials")
    assert unknown.json()["error"]["message"] == wrong.json()["error"]["message"]
    refused(lone_sign_in(lone, target, "wrong again"), 401, "invalid_credentials")
    refused(lone_sign_in(lone, target, "and again"), 401, "invalid_credentials")
    # Three failures of the account: now even the right password waits, and says how long.
    for password in ("one more guess", PASSWORD):
        throttled = lone_sign_in(lone, target, password)
        refused(throttled, 429, "sign_in_throttled")
        assert 1 <= int(throttled.headers["retry-after"]) <= 60, throttled.headers
        assert "this account" in throttled.json()["error"]["message"]
        assert "try again in 1 minute" in throttled.json()["error"]["message"]
        assert COOKIE not in throttled.headers.get("set-cookie", "")
    # Another account from the same address still signs in.
    assert lone_sign_in(lone, bystander).status_code == 200

    # Guesses sent at once are counted at once: no more than the account's allowance is checked.
    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(lambda i: lone_sign_in(lone, racer, f"guess {i}").status_code, range(12)))
    assert sorted(set(statuses)) == [401, 429], statuses
    assert statuses.count(401) <= 3, statuses

    # A stolen session cannot guess its operator's password through a password change either.
    kept = lone_sign_in(lone, keeper)
    assert kept.status_code == 200, kept.text
    with with_cookie(lone.url, cookie_of(kept)) as thief:
        thief.headers["X-CSRF-Token"] = kept.json()["csrf_token"]
        change = "/v1/console/password"
        for guess in ("guess one", "guess two", "guess three"):
            body = {"current_password": guess, "new_password": "a new password to keep"}
            refused(thief.post(change, json=body), 403, "invalid_credentials")
        body = {"current_password": PASSWORD, "new_password": "a new password to keep"}
        refused(thief.post(change, json=body), 429, "sign_in_throttled")
        assert thief.get("/v1/console/me").status_code == 200  # the session itself goes on

    # Then the address: guesses at many accounts run out its allowance of 10.
    sprayed = 0
    while (response := lone_sign_in(lone, unique("spray"), "wrong password")).status_code == 401:
        sprayed += 1
        assert sprayed <= 10, "the address was never throttled"
    # Counted so far: the unknown e-mail, the target's 3, the racer's checked guesses, the keeper's 3.
    assert sprayed == 10 - (1 + 3 + statuses.count(401) + 3), (sprayed, statuses)
    refused(response, 429, "sign_in_throttled")
    assert "your network address" in response.json()["error"]["message"]
    # Now the bystander's right password waits too.
    refused(lone_sign_in(lone, bystander), 429, "sign_in_throttled")


# --- the expiry logic of console sessions, against a real NATS KV ------------------------------


def operator(epoch: int = 0) -> OperatorRecord:
    now = datetime.now(UTC)
    return OperatorRecord(
        operator_id=new_id("op"),
        email="unit@obdal.test",
        name="Unit",
        password_hash="",
        roles={},
        created_at=now,
        password_changed_at=now,
        session_epoch=epoch,
    )


async def sessions_kv(servers: Servers, **limits: float) -> tuple[Any, ConsoleSessions]:
    nc = await nats.connect(servers.nats.url)
    bucket = f"test_console_{uuid.uuid4().hex[:12]}"
    kv = await key_value(nc.jetstream(), bucket, ttl_s=60)
    return nc, ConsoleSessions(
        kv,
        js=nc.jetstream(),
        bucket=bucket,
        idle=timedelta(seconds=limits["idle"]),
        absolute=timedelta(seconds=limits["absolute"]),
    )


async def test_sessions_end_after_idle_and_absolute_time_and_on_a_new_epoch(servers: Servers) -> None:
    nc, sessions = await sessions_kv(servers, idle=1.5, absolute=3.5)
    try:
        op = operator()
        # Idle: unused for longer than `idle`, the session ends (and stays ended).
        idle_cookie, _ = await sessions.start(op)
        assert await sessions.resolve(idle_cookie, op) is not None
        await asyncio.sleep(1.8)
        assert await sessions.resolve(idle_cookie, op) is None
        # Used more often than `idle`, it lives until `absolute` since sign-in, then ends.
        used, _ = await sessions.start(op)
        started = time.monotonic()
        while time.monotonic() - started < 3.0:
            assert await sessions.resolve(used, op) is not None, (
                f"ended at {time.monotonic() - started:.1f} s"
            )
            await asyncio.sleep(0.4)
        await asyncio.sleep(0.8)
        assert await sessions.resolve(used, op) is None
        # A session of an older epoch (the password changed since) ends, even for its old epoch.
        cookie, _ = await sessions.start(op)
        newer = msgspec.structs.replace(op, session_epoch=1)
        assert await sessions.resolve(cookie, newer) is None
        assert await sessions.resolve(cookie, op) is None
        # The cookie names its operator: not another's, not a removed one's, nor another token.
        cookie, _ = await sessions.start(op)
        assert await sessions.resolve(cookie, operator()) is None
        assert await sessions.resolve(cookie, None) is None
        forged = f"{op.operator_id}.{new_secret(43)}"
        for bad in (forged, "", "x", f"{op.operator_id}.short", cookie + "x", cookie.replace(".", "..")):
            assert await sessions.resolve(bad, op) is None, bad
        assert await sessions.resolve(cookie, op) is not None
    finally:
        await nc.close()


async def test_end_all_ends_only_that_operators_sessions(servers: Servers) -> None:
    nc, sessions = await sessions_kv(servers, idle=60, absolute=600)
    try:
        leaving, staying = operator(), operator()
        theirs = [(await sessions.start(leaving))[0] for _ in range(3)]
        kept = (await sessions.start(staying))[0]
        await sessions.end_all(leaving.operator_id)
        for cookie in theirs:
            assert await sessions.resolve(cookie, leaving) is None
        assert await sessions.resolve(kept, staying) is not None
        await sessions.end(kept)
        assert await sessions.resolve(kept, staying) is None
    finally:
        await nc.close()


# --- names rendered inert ---------------------------------------------------------------------

APP_NAME = "<img src=x onerror=alert(1)>"
OPERATOR_NAME = '<script>alert("op")</script><b onmouseover=alert(2)>Mallory</b>'


def test_html_in_app_and_operator_names_is_shown_as_text(api: Api, tmp_path: Path) -> None:
    ensure_owner(api)
    app_id = api.create_app(APP_NAME)
    email = unique("xss")
    response = api.admin.post(
        "/v1/admin/operators",
        json={"email": email, "password": PASSWORD, "roles": {app_id: "owner"}, "name": OPERATOR_NAME},
    )
    assert response.status_code == 201, response.text
    dialogs: list[str] = []
    with chromium() as browser:
        page = browser.new_page()

        def record(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", record)
        browser_sign_in(page, api.url, email)
        page.goto(f"{api.url}/console")
        expect(page.get_by_role("link", name=APP_NAME)).to_be_visible()
        assert page.locator("img[src='x']").count() == 0
        visited = ["/console"]
        for path in ("/console/operators", f"/console/apps/{app_id}/conversations"):
            shown = page.goto(f"{api.url}{path}")
            if shown is None or shown.status != 200:
                continue  # that page is not there yet
            visited.append(path)
            assert page.locator("img[src='x']").count() == 0
            assert page.locator("script:text('alert')").count() == 0
            if path == "/console/operators":
                expect(page.get_by_text(OPERATOR_NAME, exact=False).first).to_be_visible()
            else:
                expect(page.get_by_text(APP_NAME).first).to_be_visible()
        page.mouse.move(10, 10)
        page.wait_for_timeout(300)
        page.close()
    assert dialogs == [], (dialogs, visited)


def test_the_audit_log_cannot_be_widened_by_a_repeated_app_id(world: World) -> None:
    viewer = world.consoles["viewer"]
    polluted = f"/v1/admin/audit?app_id={world.app}&app_id={world.other_app}"
    response = viewer.call("GET", polluted)
    if response.status_code == 200:
        assert {e["app_id"] for e in response.json()["events"]} <= {world.app}, response.text
    else:
        assert response.status_code in (400, 403), response.text


@pytest.mark.parametrize("value", ["", '""', "garbage", "op_x.y"])
def test_an_empty_or_malformed_cookie_is_a_401_not_a_crash(world: World, value: str) -> None:
    with with_cookie(world.api.url, value) as http:
        for response in (
            http.get("/v1/files", headers={"Obdal-App": world.app}),
            http.get(f"/v1/admin/apps/{world.app}"),
            http.get("/v1/console/me"),
        ):
            assert response.status_code == 401, response.text


def test_a_role_taken_back_or_a_password_reset_applies_to_a_live_session(api: Api, world: World) -> None:
    email = unique("demoted")
    operator = add_operator(api, email, {world.app: "editor"})
    console = sign_in(api, email)
    try:
        create = f"/v1/admin/apps/{world.app}/keys"
        assert console.call("POST", create, json={"name": "before"}).status_code == 201
        changed = api.admin.patch(
            f"/v1/admin/operators/{operator['operator_id']}", json={"roles": {world.app: "viewer"}}
        )
        assert changed.status_code == 200, changed.text
        refused(console.call("POST", create, json={"name": "after"}), 403, "role_forbids")
        refused(
            console.call("POST", "/v1/answers", app=world.app, json={"questions": ["Q?"], "answer": "A."}),
            403,
            "role_forbids",
        )
        assert console.call("GET", "/v1/files", app=world.app).status_code == 200
        changed = api.admin.patch(
            f"/v1/admin/operators/{operator['operator_id']}", json={"roles": {world.app: None}}
        )
        assert changed.status_code == 200, changed.text
        refused(console.call("GET", "/v1/files", app=world.app), 403, "not_an_operator_of_app")
        reset = api.admin.patch(
            f"/v1/admin/operators/{operator['operator_id']}", json={"password": "reset by the owner"}
        )
        assert reset.status_code == 200, reset.text
        refused(console.call("GET", "/v1/console/me"), 401, "console_session_ended")
    finally:
        console.close()


def test_an_owner_of_one_app_cannot_raise_their_own_or_anyones_roles_beyond_it(world: World) -> None:
    owner = world.consoles["owner"]
    me = world.operators["owner"]["operator_id"]
    grab = [
        {"email": unique("grab"), "password": PASSWORD, "roles": {"*": "owner"}},
        {"email": unique("grab"), "password": PASSWORD, "roles": {world.other_app: "viewer"}},
    ]
    for body in grab:
        refused(owner.call("POST", "/v1/admin/operators", json=body), 403, "role_forbids")
    for roles in ({"*": "owner"}, {world.other_app: "owner"}):
        refused(owner.call("PATCH", f"/v1/admin/operators/{me}", json={"roles": roles}), 403, "role_forbids")
    every = world.operators["every"]["operator_id"]
    refused(
        owner.call("PATCH", f"/v1/admin/operators/{every}", json={"password": "taken over now"}),
        403,
        "role_forbids",
    )
    viewer = world.operators["viewer"]["operator_id"]
    refused(
        owner.call("PATCH", f"/v1/admin/operators/{viewer}", json={"password": "taken over now"}),
        403,
        "role_forbids",
    )
    refused(owner.call("DELETE", f"/v1/admin/operators/{viewer}"), 403, "role_forbids")
    listed = {o["operator_id"]: o for o in world.api.admin.get("/v1/admin/operators").json()["operators"]}
    assert listed[me]["roles"] == {world.app: "owner", world.spare: "owner"}
    assert viewer in listed
    assert world.consoles["viewer"].call("GET", "/v1/console/me").status_code == 200


class _SignOutMeanwhile:
    """A KV whose reads are followed at once by a purge of the key read: a sign-out landing
    between a request's read of its session and its write of the session's last use."""

    def __init__(self, kv: Any) -> None:
        self.kv = kv
        self.racing = False

    async def get(self, key: str) -> Any:
        entry = await self.kv.get(key)
        if self.racing:
            await self.kv.purge(key)
        return entry

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kv, name)


async def test_a_request_in_flight_does_not_bring_a_signed_out_session_back(servers: Servers) -> None:
    nc, plain = await sessions_kv(servers, idle=2, absolute=60)
    try:
        racing = _SignOutMeanwhile(plain._kv)
        sessions = ConsoleSessions(
            cast(Any, racing), js=plain._js, bucket=plain._bucket, idle=plain.idle, absolute=plain.absolute
        )
        op = operator()
        cookie, _ = await sessions.start(op)
        await asyncio.sleep(0.7)  # long enough that the next request writes the session's last use
        racing.racing = True
        assert await sessions.resolve(cookie, op) is not None  # it was live when read
        racing.racing = False
        assert await sessions.resolve(cookie, op) is None
    finally:
        await nc.close()
