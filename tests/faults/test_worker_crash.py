"""A chat worker killed (SIGKILL) mid-answer: the client gets an error event (not streamed: a 504 JSON
error) within seconds, never a hung request; the tokens it received are metered by a surviving worker;
the next request is served."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import litellm

from obdal.servers import free_port
from tests.api import Api, parse_sse
from tests.conftest import BIN, Process, Servers, own_bus, start_process, wait_http
from tests.upstream import MODEL, PROMPT_TOKENS, WORDS, Upstream, serve_upstream

IDLE_TIMEOUT_S = 5.0  # the gateway's OBDAL_CHAT_IDLE_TIMEOUT_S default


def wait_served(api: Api, key: str, timeout: float = 240) -> str:
    """Poll until a chat worker answers (503 while none has joined yet); the answer."""
    deadline = time.monotonic() + timeout
    while (reply := api.chat(key, "hello")).status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["content"])


def test_killed_worker_ends_the_stream_with_an_error(servers: Servers, tmp_path: Path) -> None:
    upstream = Upstream()
    server = serve_upstream(upstream)
    port = free_port()
    with own_bus(tmp_path) as bus:
        env = bus.env(
            port=port,
            admin_token="crash-admin",
            OBDAL_MONGO_URL=servers.mongo.url,
            OBDAL_MONGO_DB="crash",
            OBDAL_QDRANT_URL=":memory:",
            OBDAL_CHAT_MODEL=f"openai/{MODEL}",
            OBDAL_CHAT_API_BASE=f"http://127.0.0.1:{server.server_address[1]}/v1",
        )
        try:
            _crash_and_recover(env, port, tmp_path, upstream)
        finally:
            server.shutdown()


def _crash_and_recover(env: dict[str, str], port: int, tmp_path: Path, upstream: Upstream) -> None:
    stack = start_process(
        [str(BIN / "obdal"), "up"], {**env, "OBDAL_SERVICES": "gateway,metering"}, tmp_path / "up.log"
    )
    # Each worker calls the provider with its own key, so the provider tells which one answers.
    workers = [
        start_process(
            [str(BIN / "obdal-chat")],
            {**env, "OBDAL_CHAT_API_KEY": f"sk-worker{n}"},
            tmp_path / f"chat{n}.log",
        )
        for n in range(2)
    ]
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/v1/status/live", stack)
        api = Api(url, "crash-admin")
        _, key = api.new_tenant("crash")
        wait_served(api, key)

        lines: list[str] = []
        killed_at = 0.0
        with api.http.stream(
            "POST", "/v1/chat", headers=api.auth(key), json={"message": "[long] hi", "stream": True}
        ) as response:
            for line in response.iter_lines():
                lines.append(line)
                if not killed_at and sum(x.startswith("event: message") for x in lines) == 3:
                    serving = int(upstream.auth[-1].removeprefix("Bearer sk-worker"))
                    workers[serving].stop(signal.SIGKILL)
                    killed_at = time.monotonic()
        ended_after = time.monotonic() - killed_at
        events, _ = parse_sse(lines)
        assert events[-1].event == "error"
        assert events[-1].data["code"] == "worker_timeout"
        assert ended_after < IDLE_TIMEOUT_S + 2, f"stream ended {ended_after:.1f} s after the worker died"
        received = "".join(e.data["content"] for e in events if e.event == "message")
        assert received.startswith(" word0 word1 word2")

        # The survivor serves the next request at once, and has metered what the client received.
        assert wait_served(api, key, timeout=10) == "".join(WORDS)
        usage = api.wait_usage(key, 3)
        assert usage["total_requests"] == 3
        partial_tokens = litellm.token_counter(model=f"openai/{MODEL}", text=received)
        assert usage["completion_tokens"] == 2 * len(WORDS) + partial_tokens
        assert usage["prompt_tokens"] > 2 * PROMPT_TOKENS, "the partial answer's prompt is metered too"
        assert "metered the partial answer" in workers[1 - serving].log()
        _kill_mid_json_answer(api, key, upstream, workers[1 - serving])
    finally:
        for worker in workers:
            worker.stop()
        stack.stop()


def _kill_mid_json_answer(api: Api, key: str, upstream: Upstream, worker: Process) -> None:
    """The last worker dies during a non-streamed answer: a 504 JSON error in the stream's bound."""
    asked = len(upstream.auth)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(api.chat, key, "[long] hi again")
        deadline = time.monotonic() + 30
        while len(upstream.auth) == asked:  # not yet at the provider
            assert time.monotonic() < deadline, "the worker never called the provider"
            time.sleep(0.05)
        time.sleep(0.5)  # mid-answer: a score of its 400 words generated
        worker.stop(signal.SIGKILL)
        killed_at = time.monotonic()
        reply = pending.result()
    ended_after = time.monotonic() - killed_at
    assert reply.status_code == 504, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.json() == {
        "error": {"code": "worker_timeout", "message": "the chat worker stopped responding"}
    }
    assert ended_after < IDLE_TIMEOUT_S + 2, f"answered {ended_after:.1f} s after the worker died"
    # No worker is left: the next request is refused at once, before any answer starts.
    refused = api.chat(key, "anyone there?")
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "no_worker_available"
