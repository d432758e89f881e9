"""Verified end users (docs/identity.md): the site's backend signs the user id with the app's
identity secret; the gateway checks it. Through the running stack, and in Chromium for the widget
resuming a signed-in customer's conversation on another device."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect

from obdal.servers import free_port
from tests.api import Api, poll
from tests.browser import POLICY, Site, ask, open_widget, serious_violations
from tests.conftest import Stack

QUESTION = "Which courier do you ship with?"


def sign(secret: str, user: str) -> str:
    """What the site's backend computes, as docs/identity.md shows it."""
    return hmac.new(secret.encode(), user.encode(), hashlib.sha256).hexdigest()


class Shop:
    def __init__(self, api: Api, name: str, origin: str) -> None:
        self.app_id, self.secret_key = api.new_tenant(name)
        api.index(self.secret_key, "policy.md", POLICY)
        self.widget = api.create_key(self.app_id, kind="publishable", allowed_origins=[origin])["key"]
        self.origin = origin
        self.api = api

    def identity_secret(self, **body: Any) -> str:
        response = self.api.admin.post(f"/v1/admin/apps/{self.app_id}/identity-secret", json=body or None)
        assert response.status_code == 201, response.text
        secret: str = response.json()["identity_secret"]
        return secret

    def widget_chat(self, **body: Any) -> httpx.Response:
        headers = {**self.api.auth(self.widget), "Origin": self.origin}
        return self.api.http.post("/v1/chat", headers=headers, json={"message": QUESTION, **body})


@pytest.fixture
def shop(api: Api) -> Shop:
    return Shop(api, "identity", "https://shop.identity.example.com")


def error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_only_a_signed_user_id_counts_from_a_publishable_key(shop: Shop) -> None:
    # Before the app has a secret, a hash cannot be checked: said so, not ignored.
    assert error(shop.widget_chat(user="alice", user_hash="0" * 64)) == (400, "identity_verification_off")
    secret = shop.identity_secret()
    assert secret.startswith("ids_")
    shown = shop.api.admin.get(f"/v1/admin/apps/{shop.app_id}").json()
    assert shown["identity_verification"]["enabled"] is True
    listed = shop.api.admin.get("/v1/admin/apps").text
    assert secret not in listed
    assert secret not in str(shown)

    verified = shop.widget_chat(user="alice", user_hash=sign(secret, "alice"))
    assert verified.status_code == 200, verified.text
    # Upper-case hex is the same signature.
    assert shop.widget_chat(user="alice", user_hash=sign(secret, "alice").upper()).status_code == 200
    assert error(shop.widget_chat(user="alice", user_hash=sign(secret, "mallory"))) == (
        401,
        "invalid_user_hash",
    )
    assert error(shop.widget_chat(user="alice", user_hash="not-a-hash")) == (401, "invalid_user_hash")
    assert error(shop.widget_chat(user_hash=sign(secret, "alice"))) == (400, "user_hash_without_user")
    # Claimed without a signature: the turn is anonymous, alice's sessions are not touched.
    claimed = shop.widget_chat(user="alice")
    assert claimed.status_code == 200, claimed.text

    alice = shop.api.wait_sessions(shop.secret_key, user="alice", count=2)
    assert verified.json()["session_id"] in {s["session_id"] for s in alice}
    assert claimed.json()["session_id"] not in {s["session_id"] for s in alice}

    # A secret key is the app's own server: its user is trusted, a wrong hash still refused.
    trusted = shop.api.chat(shop.secret_key, QUESTION, user="bob")
    assert trusted.status_code == 200, trusted.text
    wrong = shop.api.chat(shop.secret_key, QUESTION, user="bob", user_hash=sign(secret, "alice"))
    assert error(wrong) == (401, "invalid_user_hash")


def test_another_visitor_cannot_continue_a_verified_users_session(shop: Shop) -> None:
    secret = shop.identity_secret()
    first = shop.widget_chat(user="carol", user_hash=sign(secret, "carol")).json()
    session_id = first["session_id"]
    # Carol again, from another device: the same session, with its context.
    again = shop.widget_chat(user="carol", user_hash=sign(secret, "carol"), session_id=session_id).json()
    assert again["session_id"] == session_id
    assert again["usage"]["prompt_tokens"] > first["usage"]["prompt_tokens"]
    # Someone holding the page's key and the session id, claiming to be carol: a new conversation.
    for body in ({"user": "carol"}, {}):
        stolen = shop.widget_chat(session_id=session_id, **body).json()
        assert stolen["session_id"] != session_id
        assert stolen["usage"]["prompt_tokens"] == first["usage"]["prompt_tokens"]


def test_rotation_keeps_the_old_secret_for_its_overlap_and_deletion_stops_verifying(shop: Shop) -> None:
    old = shop.identity_secret()
    new = shop.identity_secret(overlap_s=3600)
    assert new != old
    for secret in (old, new):
        assert shop.widget_chat(user="dave", user_hash=sign(secret, "dave")).status_code == 200
    newest = shop.identity_secret(overlap_s=0)
    assert error(shop.widget_chat(user="dave", user_hash=sign(new, "dave"))) == (401, "invalid_user_hash")
    assert shop.widget_chat(user="dave", user_hash=sign(newest, "dave")).status_code == 200
    # Only owners manage it; an unknown app is a 404.
    assert shop.api.admin.post("/v1/admin/apps/app_nope/identity-secret").status_code == 404
    off = shop.api.admin.delete(f"/v1/admin/apps/{shop.app_id}/identity-secret")
    assert off.status_code == 200, off.text
    assert error(shop.widget_chat(user="dave", user_hash=sign(newest, "dave"))) == (
        400,
        "identity_verification_off",
    )
    wanted = {"app.identity_secret_created", "app.identity_secret_rotated", "app.identity_secret_deleted"}
    poll(
        lambda: {
            e["action"]
            for e in shop.api.admin.get("/v1/admin/audit", params={"app_id": shop.app_id}).json()["events"]
        },
        lambda actions: wanted <= actions,
        what="the identity secret's audit entries",
    )


def test_a_verified_users_latest_conversation_for_the_widget(shop: Shop) -> None:
    secret = shop.identity_secret()
    headers = {**shop.api.auth(shop.widget), "Origin": shop.origin}

    def latest(**body: Any) -> httpx.Response:
        return shop.api.http.post("/v1/widget/conversation", headers=headers, json=body)

    assert error(latest(user="erin", user_hash=sign(secret, "erin"))) == (404, "conversation_not_found")
    said = shop.widget_chat(user="erin", user_hash=sign(secret, "erin")).json()
    shop.api.wait_session(shop.secret_key, said["session_id"], messages=2)
    found = latest(user="erin", user_hash=sign(secret, "erin"))
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["session_id"] == said["session_id"]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant"]
    assert body["messages"][0]["content"] == QUESTION
    assert body["messages"][1]["message_id"] == said["message_id"]
    assert error(latest(user="erin", user_hash=sign(secret, "frank"))) == (401, "invalid_user_hash")
    assert latest(user="erin").status_code == 400  # the hash is required
    # Another origin holding the page's key gets nothing.
    elsewhere = shop.api.http.post(
        "/v1/widget/conversation",
        headers={**shop.api.auth(shop.widget), "Origin": "https://copycat.example.net"},
        json={"user": "erin", "user_hash": sign(secret, "erin")},
    )
    assert elsewhere.status_code == 403, elsewhere.text


def test_the_demo_page_may_be_framed_only_by_the_keys_origins(api: Api, stack: Stack) -> None:
    shop = Shop(api, "identity-frame", "https://shop.frame.example.com")
    framed = httpx.get(f"{stack.url}/demo", params={"key": shop.widget})
    assert framed.status_code == 200
    policy = framed.headers["content-security-policy"]
    # Origins are stored with their port (`:443`), which CSP matches like the default.
    assert "frame-ancestors 'self' https://shop.frame.example.com:443;" in policy
    alone = httpx.get(f"{stack.url}/demo").headers["content-security-policy"]
    assert "frame-ancestors 'none'" in alone
    revoked = api.create_key(shop.app_id, kind="publishable", allowed_origins=[shop.origin])
    assert api.admin.delete(f"/v1/admin/keys/{revoked['key_id']}").status_code == 200
    gone = httpx.get(f"{stack.url}/demo", params={"key": revoked["key"]}).headers["content-security-policy"]
    assert "frame-ancestors 'none'" in gone


SIGNED_IN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Account</title></head>
<body><main><h1>Your account</h1></main>
<script src="{gateway}/widget.js" data-key="{key}" data-title="Shop help"
        data-user-id="{user}" data-user-hash="{user_hash}" async></script>
</body></html>"""


def test_the_widget_follows_a_signed_in_customer_to_another_device(
    browser: Browser, api: Api, stack: Stack
) -> None:
    port = free_port()
    shop = Shop(api, "identity-widget", f"http://127.0.0.1:{port}")
    secret = shop.identity_secret()
    user = 'gina<img src=x onerror="window.__xss=1">'
    site = Site(
        SIGNED_IN_PAGE.format(
            gateway=stack.url, key=shop.widget, user=user.replace('"', "&quot;"), user_hash=sign(secret, user)
        ),
        port=port,
    )
    try:
        laptop = browser.new_context()
        page = laptop.new_page()
        page.goto(site.origin)
        open_widget(page)
        with page.expect_request(lambda r: r.url.endswith("/v1/chat") and r.method == "POST") as sent:
            ask(page, QUESTION)
        assert '"user_hash"' in (sent.value.post_data or "")
        expect(page.locator(".msg.bot").last).to_contain_text("Zorblax", timeout=20_000)
        sessions = shop.api.wait_sessions(shop.secret_key, user=user, count=1)
        shop.api.wait_session(shop.secret_key, sessions[0]["session_id"], messages=2)
        laptop.close()

        phone = browser.new_context()  # nothing stored: another device
        page = phone.new_page()
        page.goto(site.origin)
        open_widget(page)
        expect(page.locator(".msg.user")).to_have_text([QUESTION], timeout=10_000)
        expect(page.locator(".msg.bot").last).to_contain_text("Zorblax")
        with page.expect_request(lambda r: r.url.endswith("/v1/chat") and r.method == "POST") as sent:
            ask(page, "And how long do parcels take?")
        assert sessions[0]["session_id"] in (sent.value.post_data or "")
        expect(page.locator(".msg.bot").last).to_contain_text("four days", timeout=20_000)
        assert page.evaluate("window.__xss") is None
        assert serious_violations(page) == []
        phone.close()
    finally:
        site.close()
