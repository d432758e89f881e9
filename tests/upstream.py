"""A loopback server speaking the OpenAI chat-completions streaming protocol.

The tests point the chat worker at it (usage via ``stream_options.include_usage``, slow,
failing and abandoned answers); bench/stream.py runs it as a process of its own
(``python -m tests.upstream --port P --chunks 50 --paced-chunks 750``) as the upstream of
every path it measures.

The question (the last message) picks the behaviour: ``[reject]`` is refused with a 401,
``[slow]`` sends five words 1.2 s apart, ``[fail]`` breaks the stream after one word,
``[long]`` sends 400 words 25 ms apart, ``[paced]`` sends ``paced_chunks`` words (``[paced:N]``
the first N of them) ``paced_interval_s`` apart (a model streaming at a human pace); anything else gets the
configured answer (``chunks`` words, ``interval_s`` apart).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from obdal.servers import free_port
from obdal_common.processes import die_with_parent

__all__ = ["MODEL", "PROMPT_TOKENS", "WORDS", "Upstream", "serve_upstream", "serving"]

MODEL = "gpt-4o-mini"  # a model litellm prices, so cost must not be 0
PROMPT_TOKENS = 123
WORDS = ["Hello", " from", " the", " provider", "."]


@dataclass
class Upstream:
    """How the fake provider answers, and what it saw."""

    words: list[str] = field(default_factory=lambda: list(WORDS))
    interval_s: float = 0.0
    paced_chunks: int = 0
    paced_interval_s: float = 0.02
    requests: list[dict[str, Any]] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)
    disconnected: threading.Event = field(default_factory=threading.Event)
    keep_requests: bool = True


def _chunk(
    content: str | None = None, *, finish: str | None = None, usage: dict[str, int] | None = None
) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": MODEL,
        "choices": [] if usage else [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
    }
    if usage:
        body["usage"] = usage
    return f"data: {json.dumps(body)}\n\n".encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 4096  # thousands of streams connect at once in the benchmark


def serve_upstream(upstream: Upstream, *, port: int = 0) -> ThreadingHTTPServer:
    """Serve ``upstream`` on 127.0.0.1 (a free port unless given) from a background thread."""
    # Encoded once: the benchmark's upstream must cost little next to what it measures.
    answer = [_chunk(word) for word in upstream.words]
    paced = [_chunk(f" w{n}") for n in range(upstream.paced_chunks)]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # small chunks go out at once, not 40 ms later (delayed ACKs)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if upstream.keep_requests:
                upstream.requests.append(body)
                upstream.auth.append(self.headers.get("Authorization", ""))
            question = body["messages"][-1]["content"]
            if "[reject]" in question:  # what a provider answers a bad key
                error = json.dumps({"error": {"message": "Incorrect API key", "code": "invalid_api_key"}})
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(error)))
                self.end_headers()
                self.wfile.write(error.encode())
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            words = len(upstream.words)
            try:
                if "[slow]" in question:
                    for word in WORDS:
                        time.sleep(1.2)
                        self._send(_chunk(word))
                    words = len(WORDS)
                elif "[fail]" in question:
                    self._send(_chunk("Partial"))
                    self._send(b"data: {not json\n\n")
                elif "[long]" in question:
                    for n in range(400):
                        self._send(_chunk(f" word{n}"))
                        time.sleep(0.025)
                elif "[paced" in question:
                    count = re.search(r"\[paced:(\d+)\]", question)
                    paced_words = paced[: int(count.group(1))] if count else paced
                    for chunk in paced_words:
                        time.sleep(upstream.paced_interval_s)
                        self._send(chunk)
                    words = len(paced_words)
                else:
                    for chunk in answer:
                        if upstream.interval_s:
                            time.sleep(upstream.interval_s)
                        self._send(chunk)
                self._send(_chunk(finish="stop"))
                usage = {
                    "prompt_tokens": PROMPT_TOKENS,
                    "completion_tokens": words,
                    "total_tokens": PROMPT_TOKENS + words,
                }
                if body.get("stream_options", {}).get("include_usage"):
                    self._send(_chunk(usage=usage))
                self._send(b"data: [DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                upstream.disconnected.set()

        def _send(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def log_message(self, *_: object) -> None:
            pass

    server = _Server(("127.0.0.1", port or free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@contextmanager
def serving() -> Iterator[tuple[Upstream, str]]:
    """A default upstream while the block runs: (what it saw, its OpenAI base URL)."""
    seen = Upstream()
    server = serve_upstream(seen)
    try:
        yield seen, f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()  # shutdown() only stops serving: the listening socket stays open


def main() -> None:
    # Run as a process (bench/stream.py): it would serve forever if whatever started it died.
    die_with_parent(os.getppid())
    parser = argparse.ArgumentParser(description="a loopback OpenAI-compatible streaming upstream")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=50, help="words per answer")
    parser.add_argument("--interval-s", type=float, default=0.0, help="pause before each word")
    parser.add_argument("--paced-chunks", type=int, default=0, help="words of a [paced] answer")
    parser.add_argument("--paced-interval-s", type=float, default=0.02, help="their pace")
    args = parser.parse_args()
    upstream = Upstream(
        words=[f" w{n}" for n in range(args.chunks)],
        interval_s=args.interval_s,
        paced_chunks=args.paced_chunks,
        paced_interval_s=args.paced_interval_s,
        keep_requests=False,
    )
    serve_upstream(upstream, port=args.port)
    threading.Event().wait()


if __name__ == "__main__":
    main()
