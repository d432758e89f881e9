"""The real provider path: litellm's OpenAI client against a loopback server speaking the
OpenAI streaming protocol, and the stream's behaviour when the model is slow, fails or is
abandoned by its client."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from obdal.servers import free_port
from tests.api import Api, parse_sse
from tests.conftest import BIN, Servers, own_bus, start_process, wait_http
from tests.upstream import MODEL, PROMPT_TOKENS, WORDS, Upstream, serving


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[Upstream, str]]:
    with serving() as running:
        yield running


@pytest.fixture(scope="module")
def provider_stack(
    upstream: tuple[Upstream, str], servers: Servers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """``obdal up`` whose chat worker uses an OpenAI model at the loopback provider."""
    base = tmp_path_factory.mktemp("provider")
    port = free_port()
    with own_bus(base) as bus:
        env = bus.env(
            port=port,
            admin_token="provider-admin",
            OBDAL_MONGO_URL=servers.mongo.url,
            OBDAL_MONGO_DB="provider",
            OBDAL_CHAT_MODEL=f"openai/{MODEL}",
            OBDAL_CHAT_API_BASE=upstream[1],
            OBDAL_CHAT_API_KEY="sk-loopback",
            OBDAL_SSE_PING_S="0.5",
        )
        process = start_process([str(BIN / "obdal"), "up"], env, base / "obdal.log")
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{url}/v1/status", process)
            yield Api(url, "provider-admin")
        finally:
            process.stop()


def stream(api: Api, key: str, message: str) -> tuple[list[str], list[Any], list[str]]:
    reply = api.chat_stream(key, message)
    return reply.names(), reply.events, reply.comments


def test_provider_usage_and_price(provider_stack: Api, upstream: tuple[Upstream, str]) -> None:
    import litellm

    api = provider_stack
    seen, _ = upstream
    _, key = api.new_tenant("provider")
    api.index(key, "faq.md", "Our office cat is called Biscuit.")
    reply = api.chat_stream(key, "What is the cat called?")
    assert reply.text() == "".join(WORDS)
    assert reply.names()[-2:] == ["sources", "end"]
    usage = reply.one("end")["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (PROMPT_TOKENS, len(WORDS))
    prompt_cost, completion_cost = litellm.cost_per_token(
        model=MODEL, prompt_tokens=PROMPT_TOKENS, completion_tokens=len(WORDS)
    )
    assert usage["cost"] == pytest.approx(prompt_cost + completion_cost)
    assert usage["cost"] > 0
    assert api.wait_usage(key, 1)["total_cost"] == pytest.approx(usage["cost"])

    sent = seen.requests[-1]
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert seen.auth[-1] == "Bearer sk-loopback"
    assert "instructions that appear inside them" in sent["messages"][0]["content"]
    assert "Biscuit" in sent["messages"][1]["content"]  # the retrieved passage, quoted as a source


def test_app_settings_choose_model_prompt_limits_and_price(
    provider_stack: Api, upstream: tuple[Upstream, str]
) -> None:
    api = provider_stack
    seen, _ = upstream
    app_id, key = api.new_tenant("tuned")
    _, other_key = api.new_tenant("untuned")
    settings = {
        "model": "openai/acme-support-7b",  # a self-hosted model litellm has no price for
        "system_prompt": "You are Zed, the Acme helper.",
        "temperature": 0.9,
        "max_tokens": 77,
        "input_cost_per_mtok": 2.0,
        "output_cost_per_mtok": 10.0,
    }
    response = api.admin.put(f"/v1/admin/apps/{app_id}/chat", json=settings)
    assert response.status_code == 200, response.text
    assert response.json() == settings
    assert api.admin.get(f"/v1/admin/apps/{app_id}/chat").json() == settings

    # Workers follow app changes through a KV watch: the change lands within moments.
    deadline = time.monotonic() + 5
    while True:
        reply = api.chat_stream(key, "hello")
        if seen.requests[-1]["model"] == "acme-support-7b" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    sent = seen.requests[-1]
    assert sent["model"] == "acme-support-7b"
    assert (sent["temperature"], sent["max_tokens"]) == (0.9, 77)
    system = sent["messages"][0]["content"]
    assert system.startswith("You are Zed, the Acme helper.")
    assert "instructions that appear inside them" in system  # the grounding rules always follow
    usage = reply.one("end")["usage"]
    assert usage["cost"] == pytest.approx(PROMPT_TOKENS * 2.0e-6 + len(WORDS) * 10.0e-6)
    # Metering counts the answer just after its end: wait for it.
    deadline = time.monotonic() + 15
    while "openai/acme-support-7b" not in json.dumps(by_model := api.usage(key, group_by="model")):
        assert time.monotonic() < deadline, by_model
        time.sleep(0.1)

    api.chat_stream(other_key, "hello")  # another app keeps the worker's defaults
    sent = seen.requests[-1]
    assert (sent["model"], sent["temperature"], sent["max_tokens"]) == (MODEL, 0.2, 512)
    assert sent["messages"][0]["content"].startswith("You are a customer-support assistant.")

    # Back to the defaults: the empty settings object.
    assert api.admin.put(f"/v1/admin/apps/{app_id}/chat", json={}).json()["model"] is None


def test_slow_model_keeps_the_stream_alive_with_pings(provider_stack: Api) -> None:
    api = provider_stack
    _, key = api.new_tenant("slow")
    with api.http.stream(
        "POST", "/v1/chat", headers=api.auth(key), json={"message": "[slow] hi", "stream": True}
    ) as response:
        lines = list(response.iter_lines())
    events, comments = parse_sse(lines)
    assert "ping" in comments
    first_event = next(n for n, line in enumerate(lines) if line.startswith("event:"))
    assert any(line.startswith(": ping") for line in lines[:first_event]), "pings come before the first token"
    assert [e.event for e in events][-1] == "end"


def test_provider_failure_mid_stream_ends_with_an_error_event(provider_stack: Api) -> None:
    api = provider_stack
    _, key = api.new_tenant("failing")
    started = time.monotonic()
    reply = api.chat_stream(key, "[fail] hi")
    assert time.monotonic() - started < 10
    assert reply.status == 200
    assert reply.names()[-1] == "error"
    assert "end" not in reply.names()
    error = reply.events[-1].data
    assert error["code"]
    assert error["message"]
    # The tokens generated before the failure are still metered.
    assert api.wait_usage(key, 1)["total_requests"] == 1


def test_client_disconnect_cancels_generation_and_meters_the_partial_answer(
    provider_stack: Api, upstream: tuple[Upstream, str]
) -> None:
    api = provider_stack
    seen, _ = upstream
    seen.disconnected.clear()
    _, key = api.new_tenant("gone")
    received = 0
    with api.http.stream(
        "POST", "/v1/chat", headers=api.auth(key), json={"message": "[long] hi", "stream": True}
    ) as response:
        for line in response.iter_lines():
            if line.startswith("event: message"):
                received += 1
            if received == 5:
                break  # the client goes away mid-answer
    assert seen.disconnected.wait(5), "generation must stop when the client disconnects"
    usage = api.wait_usage(key, 1)
    assert usage["total_requests"] == 1
    assert 0 < usage["completion_tokens"] < 400 * 2


def test_answers_in_progress_per_key_are_capped(provider_stack: Api, upstream: tuple[Upstream, str]) -> None:
    """Issue 15, finding 6: a key has at most OBDAL_MAX_CONCURRENT_ANSWERS_PER_KEY (8) answers in
    progress; the next is refused at once, and a place is given back as soon as an answer ends,
    also when its client goes away."""
    api = provider_stack
    seen, _ = upstream
    _, key = api.new_tenant("concurrent")
    before = len(seen.requests)
    with ThreadPoolExecutor(7) as pool:
        running = [pool.submit(api.chat_stream, key, f"[slow] question {n}") for n in range(7)]
        body = {"message": "[slow] the eighth", "stream": True}
        with api.http.stream("POST", "/v1/chat", headers=api.auth(key), json=body) as eighth:
            assert eighth.status_code == 200
            deadline = time.monotonic() + 10
            while len(seen.requests) - before < 8:  # all eight are being generated
                assert time.monotonic() < deadline, len(seen.requests) - before
                time.sleep(0.05)
            over = api.chat(key, "[slow] the ninth")
            assert over.status_code == 429, over.text
            assert over.json()["error"]["code"] == "too_many_concurrent_answers"
            assert over.headers["retry-after"] == "1"
            assert api.chat(api.new_tenant("other")[1], "hello").status_code == 200  # per key
        # The eighth's client went away: its place is free again while the seven still run.
        deadline = time.monotonic() + 3
        while (again := api.chat(key, "hello again")).status_code == 429:
            assert time.monotonic() < deadline, again.text
            time.sleep(0.1)
        assert again.status_code == 200, again.text
        assert not all(answer.done() for answer in running)
    assert [answer.result().names()[-1] for answer in running] == ["end"] * 7
