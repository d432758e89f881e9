"""Proof of work for publishable keys (docs/security.md#proof-of-work): through the running stack,
solved with the ``altcha`` package's own solver (what a bot would run) and, in Chromium, by the
widget with WebCrypto."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import pytest
from altcha import Challenge, Payload, solve_challenge
from playwright.sync_api import Browser, expect
from redis.asyncio import Redis

from obdal.servers import free_port
from obdal_common.errors import DependencyUnavailable, Forbidden
from obdal_gateway.proof_of_work import ProofOfWork
from tests.api import Api
from tests.browser import PAGE, POLICY, Site, ask, open_widget, serious_violations
from tests.conftest import Servers, Stack

QUESTION = "Which courier do you ship with?"
ORIGIN = "https://shop.pow.example.com"


class Guarded:
    def __init__(self, api: Api, origin: str = ORIGIN) -> None:
        self.app_id, self.secret = api.new_tenant("pow")
        api.index(self.secret, "policy.md", POLICY)
        made = api.create_key(self.app_id, kind="publishable", allowed_origins=[origin], proof_of_work=True)
        assert made["proof_of_work"] is True
        self.key, self.key_id = made["key"], made["key_id"]
        self.headers = {**api.auth(self.key), "Origin": origin}
        self.api = api

    def challenge(self) -> dict[str, Any]:
        response = self.api.http.get("/v1/widget/challenge", headers=self.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert body["required"] is True
        challenge: dict[str, Any] = body["challenge"]
        return challenge

    def chat(self, **body: Any) -> httpx.Response:
        return self.api.http.post("/v1/chat", headers=self.headers, json={"message": QUESTION, **body})


def solved(challenge: dict[str, Any]) -> str:
    parsed = Challenge.from_dict(challenge)
    solution = solve_challenge(parsed, timeout=30)
    assert solution is not None
    return Payload(parsed, solution).to_base64()


def refusal(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_a_question_costs_one_solved_challenge(api: Api) -> None:
    guarded = Guarded(api)
    assert refusal(guarded.chat()) == (403, "proof_of_work_required")
    challenge = guarded.challenge()
    assert challenge["parameters"]["algorithm"] == "PBKDF2/SHA-256"
    assert challenge["parameters"]["data"] == {"key_id": guarded.key_id}
    payload = solved(challenge)
    answered = guarded.chat(altcha=payload)
    assert answered.status_code == 200, answered.text
    assert "Zorblax" in answered.json()["content"]
    # Once only.
    assert refusal(guarded.chat(altcha=payload)) == (403, "proof_of_work_used")
    # Cheaper work the gateway did not sign is refused; so is garbage.
    cheap = guarded.challenge()
    cheap["parameters"]["cost"] = 1
    assert refusal(guarded.chat(altcha=solved(cheap))) == (403, "proof_of_work_invalid")
    wrong = json.loads(base64.b64decode(solved(guarded.challenge())))
    wrong["solution"]["counter"] += 1
    forged = base64.b64encode(json.dumps(wrong).encode()).decode()
    assert refusal(guarded.chat(altcha=forged)) == (403, "proof_of_work_invalid")
    assert refusal(guarded.chat(altcha="not base64 at all!")) == (403, "proof_of_work_invalid")
    # A challenge made for another key does not open this one.
    other = Guarded(api, "https://other.pow.example.com")
    assert refusal(guarded.chat(altcha=solved(other.challenge()))) == (403, "proof_of_work_invalid")
    # The OpenAI format has no place for a solution: such a key cannot use it.
    completions = api.http.post(
        "/v1/chat/completions",
        headers=guarded.headers,
        json={"messages": [{"role": "user", "content": QUESTION}]},
    )
    assert refusal(completions) == (403, "proof_of_work_required")


def test_proof_of_work_is_a_publishable_keys_setting(api: Api) -> None:
    guarded = Guarded(api)
    refused = api.admin.post(
        f"/v1/admin/apps/{guarded.app_id}/keys", json={"name": "server", "proof_of_work": True}
    )
    assert refusal(refused) == (400, "proof_of_work_for_publishable_only")
    plain = api.create_key(guarded.app_id, kind="publishable", allowed_origins=[ORIGIN])
    headers = {**api.auth(plain["key"]), "Origin": ORIGIN}
    assert api.http.get("/v1/widget/challenge", headers=headers).json() == {"required": False}
    off = api.admin.patch(f"/v1/admin/keys/{guarded.key_id}", json={"proof_of_work": False})
    assert off.status_code == 200, off.text
    assert off.json()["proof_of_work"] is False
    assert guarded.chat().status_code == 200
    secret_key = api.admin.patch(
        f"/v1/admin/keys/{api.create_key(guarded.app_id)['key_id']}", json={"proof_of_work": True}
    )
    assert refusal(secret_key) == (400, "proof_of_work_for_publishable_only")


async def test_an_expired_challenge_is_refused_and_redis_down_is_a_503(servers: Servers) -> None:
    redis = Redis.from_url(servers.redis.url)
    try:
        pow_ = ProofOfWork(redis, cost=10, expires_s=1)
        payload = solved(await pow_.challenge("key_expiring"))
        await asyncio.sleep(2.1)
        with pytest.raises(Forbidden) as expired:
            await pow_.check("key_expiring", payload)
        assert expired.value.code == "proof_of_work_expired"
    finally:
        await redis.aclose()
    gone = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    try:
        with pytest.raises(DependencyUnavailable) as down:
            await ProofOfWork(gone, cost=10, expires_s=60).challenge("key_x")
        assert down.value.code == "redis_unavailable"
    finally:
        await gone.aclose()


def test_the_widget_solves_its_challenge_before_each_question(
    browser: Browser, api: Api, stack: Stack
) -> None:
    port = free_port()
    guarded = Guarded(api, f"http://127.0.0.1:{port}")
    site = Site(PAGE.format(gateway=stack.url, key=guarded.key), port=port)
    try:
        page = browser.new_page()
        page.goto(site.origin)
        open_widget(page)
        for question, expected in ((QUESTION, "Zorblax"), ("How long do parcels take?", "four days")):
            with page.expect_request(lambda r: r.url.endswith("/v1/chat") and r.method == "POST") as sent:
                ask(page, question)
            assert '"altcha":"' in (sent.value.post_data or "")
            expect(page.locator(".msg.bot").last).to_contain_text(expected, timeout=30_000)
        expect(page.locator(".msg.error")).to_have_count(0)
        assert serious_violations(page) == []
        page.close()
    finally:
        site.close()
