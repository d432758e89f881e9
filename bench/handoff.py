"""How fast a person's reply reaches the customer's open widget (docs/handoff.md; target: 2 s).

Starts the servers and ``obdal up`` (bench/analytics_load.py's stack), hands a session to a person
and holds its event stream open (``GET /v1/sessions/{id}/events``, as the widget does), then
sends ``--replies`` replies through ``POST /v1/sessions/{id}/messages`` one after another and
measures, for each, the time from sending the request to the reply's event arriving on the
stream. The baseline, in the same run and on the same NATS: a core NATS publish and its delivery
to a subscriber (what the live nudge itself costs), so the ratio is what the API, the storage
(sealed, in MongoDB) and the stream add.

Prints a table; the last line is JSON.

    .venv/bin/python bench/handoff.py [--replies 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import threading
import time
from typing import Any

import httpx
import nats
from analytics_load import stack
from usage_lag import percentile

__all__ = ["measure"]


def _listen(client: httpx.Client, url: str, arrived: queue.Queue[tuple[str, float]]) -> None:
    try:
        with client.stream("GET", url) as response:
            for line in response.iter_lines():
                if line.startswith("id: "):
                    arrived.put((line[4:], time.perf_counter()))
    except httpx.HTTPError:
        pass  # the stack stopping ends the stream


async def _nats_baseline(url: str, rounds: int) -> list[float]:
    nc = await nats.connect(url)
    try:
        got: asyncio.Queue[float] = asyncio.Queue()

        async def handler(_: Any) -> None:
            got.put_nowait(time.perf_counter())

        await nc.subscribe("bench.handoff.baseline", cb=handler)
        taken = []
        for _ in range(rounds):
            sent = time.perf_counter()
            await nc.publish("bench.handoff.baseline", b"{}")
            taken.append(await got.get() - sent)
        return taken
    finally:
        await nc.close()


def measure(replies: int) -> dict[str, Any]:
    with stack() as running:
        admin = httpx.Client(
            base_url=running.url, headers={"Authorization": f"Bearer {running.admin_token}"}, timeout=30
        )
        app_id = admin.post("/v1/admin/apps", json={"name": "bench handoff"}).json()["app_id"]
        key = admin.post(f"/v1/admin/apps/{app_id}/keys", json={"name": "bench"}).json()["key"]
        api = httpx.Client(base_url=running.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        session_id = api.post("/v1/chat", json={"message": "Where is my parcel?"}).json()["session_id"]
        assert api.post(f"/v1/sessions/{session_id}/handoff", json={}).status_code == 200
        arrived: queue.Queue[tuple[str, float]] = queue.Queue()
        listener = httpx.Client(base_url=running.url, timeout=None)
        events = f"/v1/sessions/{session_id}/events?api_key={key}"
        threading.Thread(target=_listen, args=(listener, events, arrived), daemon=True).start()
        time.sleep(1.0)  # the stream is open and subscribed
        shown, posted = [], []
        for n in range(replies):
            sent = time.perf_counter()
            answer = api.post(
                f"/v1/sessions/{session_id}/messages", json={"role": "agent", "content": f"Reply {n}"}
            )
            posted.append(time.perf_counter() - sent)
            message_id, at = arrived.get(timeout=10)
            assert message_id == answer.json()["message_id"]
            shown.append(at - sent)
        listener.close()
        baseline = asyncio.run(_nats_baseline(running.nats_url, replies))
    return {
        "replies": replies,
        "shown_p50_ms": round(1000 * percentile(shown, 0.5), 2),
        "shown_p95_ms": round(1000 * percentile(shown, 0.95), 2),
        "shown_max_ms": round(1000 * max(shown), 2),
        "post_p50_ms": round(1000 * percentile(posted, 0.5), 2),
        "nats_p50_ms": round(1000 * percentile(baseline, 0.5), 3),
        "ratio_p50": round(percentile(shown, 0.5) / percentile(baseline, 0.5), 1),
        "target_ms": 2000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replies", type=int, default=50)
    result = measure(parser.parse_args().replies)
    print(f"{'':28}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
    print(
        f"{'reply shown on the stream':28}{result['shown_p50_ms']:>10}{result['shown_p95_ms']:>10}"
        f"{result['shown_max_ms']:>10}"
    )
    print(f"{'POST …/messages answered':28}{result['post_p50_ms']:>10}")
    print(f"{'NATS publish → delivery':28}{result['nats_p50_ms']:>10}")
    print(f"shown / NATS baseline (p50): {result['ratio_p50']}x; target {result['target_ms']} ms")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
