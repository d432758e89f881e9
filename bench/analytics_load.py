"""How fast ``GET /v1/analytics`` and ``GET /v1/analytics/unanswered`` answer for an app with
100,000 turns; target p95 < 300 ms.

Starts NATS, Redis and SecantusDB and ``obdal up`` on them in a temporary directory, then loads
one app through the real metering consumer: ``turns`` TurnEvents published onto the events
stream, spread over 30 days, 4 turns per session, 1 end user per 1.5 sessions; questions are
unit vectors around 300 intents (cosine ~0.75 to their intent, ~0.55 between two paraphrases,
as MiniLM places paraphrases) plus 3 % one-off questions; 15 % declined, 10 % small talk (no
vector), 5 % curated, the rest answered citing 2 of 20 files; 2 % of the turns rated (a third
down). Waits until the rollups count every turn, then times ``requests`` calls of each route
through the gateway (30 days, defaults) and one day's recompute. Prints the figures; the last
line is JSON. ``measure()`` is what bench/support.py calls.

    .venv/bin/python bench/analytics_load.py [--turns 100000] [--requests 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from pymongo import AsyncMongoClient
from usage_lag import embedded_stack, percentile

from obdal.servers import mongo_server, nats_server, redis_server
from obdal_common import subjects
from obdal_common.contract import Metering, NatsBus
from obdal_common.messaging import close, connect, publish_event
from obdal_common.schemas import FeedbackSet, Source, TurnEvent, Usage
from obdal_metering.rollups import Rollups

__all__ = ["measure"]

DAYS = 30
INTENTS = 300
DIM = 384
ONE_OFF = 0.03
TURNS_PER_SESSION = 4
SESSIONS_PER_USER = 1.5
RATED = 0.02
EMBEDDER = "obdal/minilm-l6-int8"
_PUBLISH_AT_ONCE = 1000
_RATE_AT_ONCE = 32
# Seldom: a report of a loaded app costs SecantusDB what the consumer needs to go on loading.
_POLL_S = 5.0


@dataclass(frozen=True)
class Stack:
    url: str
    admin_token: str
    nats_url: str
    mongo_url: str


@contextmanager
def stack() -> Iterator[Stack]:
    """The servers, in a temporary directory, and ``obdal up`` on them (the bench publishes to
    and reads from them directly)."""
    with tempfile.TemporaryDirectory(prefix="obdal-analytics-") as tmp:
        base = Path(tmp)
        started = []
        try:
            for make in (nats_server, redis_server, mongo_server):
                started.append(make(base).start())
            nats, redis, mongo = started
            with embedded_stack(
                stop_timeout_s=120,
                OBDAL_NATS_URL=nats.url,
                OBDAL_REDIS_URL=redis.url,
                OBDAL_MONGO_URL=mongo.url,
            ) as (url, token):
                yield Stack(url=url, admin_token=token, nats_url=nats.url, mongo_url=mongo.url)
        finally:
            for server in reversed(started):
                server.stop()


def _questions(turns: int, rng: np.random.Generator) -> np.ndarray[Any, np.dtype[np.float32]]:
    """One unit vector per turn: 300 intents' paraphrases, and one-off questions."""
    centres = rng.normal(size=(INTENTS, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = rng.normal(size=(turns, DIM))
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    # cos(paraphrase, intent) = 0.75 (0.55 between two paraphrases: MiniLM's typical values).
    vectors = 0.75 * centres[rng.integers(0, INTENTS, size=turns)] + np.sqrt(1 - 0.75**2) * noise
    one_off = rng.random(turns) < ONE_OFF
    vectors[one_off] = noise[one_off]
    out: np.ndarray[Any, np.dtype[np.float32]] = vectors.astype(np.float32)
    return out


def _events(
    app_id: str,
    key_id: str,
    turns: int,
    *,
    days: int,
    seed: int = 1,
    turns_per_session: int = TURNS_PER_SESSION,
) -> list[TurnEvent]:
    rng = np.random.default_rng(seed)
    vectors = _questions(turns, rng)
    now = datetime.now(UTC)
    start = now - timedelta(days=days - 1)
    span_s = (now - start).total_seconds()
    times = sorted(start + timedelta(seconds=float(s)) for s in rng.random(turns) * span_s)
    outcomes = rng.choice(
        ["answered", "declined", "smalltalk", "curated"], size=turns, p=[0.7, 0.15, 0.1, 0.05]
    )
    events = []
    for n, (at, outcome) in enumerate(zip(times, outcomes, strict=True)):
        session = n // turns_per_session
        files: list[int] = rng.choice(20, size=2, replace=False).tolist() if outcome == "answered" else []
        sources = [
            Source(file_id=f"file_{f:04d}", filename=f"doc-{f}.md", snippet="…", score=0.6) for f in files
        ]
        events.append(
            TurnEvent(
                event_id=f"evt_bench{n}",
                app_id=app_id,
                key_id=key_id,
                session_id=f"sess_bench{session}",
                message_id=f"msg_bench{n}",
                user_message=f"question {n} of intent-like text, as long as a customer's",
                answer="An answer of a few sentences. " * 8,
                sources=sources,
                usage=Usage(prompt_tokens=900, completion_tokens=80, total_tokens=980, cost=0.0004),
                occurred_at=at,
                user=f"user{int(session / SESSIONS_PER_USER)}",
                outcome=str(outcome),  # type: ignore[arg-type]
                question_vector=b"" if outcome == "smalltalk" else vectors[n].astype("<f2").tobytes(),
                embedder="" if outcome == "smalltalk" else EMBEDDER,
                curated_answer_id=f"ans_{n % 12}" if outcome == "curated" else None,
            )
        )
    return events


async def _publish(nats_url: str, events: list[TurnEvent]) -> None:
    nc = await connect(nats_url, name="bench-publisher")
    js = nc.jetstream()
    try:
        for at in range(0, len(events), _PUBLISH_AT_ONCE):
            chunk = events[at : at + _PUBLISH_AT_ONCE]
            # The product's publisher: retried on a timeout (a busy server), deduplicated by id.
            await asyncio.gather(
                *(
                    publish_event(js, subjects.TURN_EVENT, e, msg_id=e.event_id, give_up_after=120)
                    for e in chunk
                )
            )
    finally:
        await close(nc)


async def _rate(nats_url: str, app_id: str, events: list[TurnEvent], rng: np.random.Generator) -> int:
    """Rate a share of the (stored) turns; how many."""
    rated = [e for e in events if rng.random() < RATED]
    nc = await connect(nats_url, name="bench-rater")
    metering = Metering(NatsBus(nc))
    try:
        for at in range(0, len(rated), _RATE_AT_ONCE):
            await asyncio.gather(
                *(
                    metering.feedback(
                        FeedbackSet(
                            app_id=app_id,
                            message_id=e.message_id,
                            rating="down" if rng.random() < 1 / 3 else "up",
                        )
                    )
                    for e in rated[at : at + _RATE_AT_ONCE]
                )
            )
    finally:
        await close(nc)
    return len(rated)


async def _recompute_s(mongo_url: str, app_id: str, days: int = 5) -> float:
    """Seconds to recompute one day's rollup (the mean over ``days`` days)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    rollups = Rollups(client, "obdal", refresh_s=1.0)
    today = datetime.now(UTC).date()
    try:
        began = time.perf_counter()
        for n in range(days):
            await rollups.recompute(app_id, today - timedelta(days=n))
        return (time.perf_counter() - began) / days
    finally:
        await client.close()


def _get(http: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    response = http.get(path, params=params)
    if response.status_code != 200:
        raise SystemExit(f"{path}: {response.status_code} {response.text}")
    body: dict[str, Any] = response.json()
    return body


def _timed(http: httpx.Client, path: str, requests: int) -> list[float]:
    times = []
    for _ in range(requests):
        began = time.perf_counter()
        response = http.get(path)
        times.append(time.perf_counter() - began)
        assert response.status_code == 200, response.text
    return times


def measure(turns: int = 100_000, *, days: int = DAYS, requests: int = 50) -> dict[str, float]:
    """Load an app with ``turns`` turns over its last ``days`` days and time the two routes over
    the last 30 days (milliseconds and seconds)."""
    with stack() as s:
        admin = httpx.Client(base_url=s.url, headers={"Authorization": f"Bearer {s.admin_token}"}, timeout=60)
        app_id = admin.post("/v1/admin/apps", json={"name": "analytics-bench"}).json()["app_id"]
        created = admin.post(f"/v1/admin/apps/{app_id}/keys", json={"name": "bench"}).json()
        http = httpx.Client(base_url=s.url, headers={"Authorization": f"Bearer {created['key']}"}, timeout=60)
        events = _events(app_id, created["key_id"], turns, days=days)
        began = time.perf_counter()
        asyncio.run(_publish(s.nats_url, events))
        published_s = time.perf_counter() - began
        while _get(http, "/v1/analytics")["totals"]["messages"] < turns:
            time.sleep(_POLL_S)
        loaded_s = time.perf_counter() - began
        began = time.perf_counter()
        rated = asyncio.run(_rate(s.nats_url, app_id, events, np.random.default_rng(2)))
        rated_s = time.perf_counter() - began
        while True:
            report = _get(http, "/v1/analytics")
            if report["totals"]["feedback_up"] + report["totals"]["feedback_down"] >= rated:
                break
            time.sleep(_POLL_S)
        ratings_counted_s = time.perf_counter() - began
        page = _get(http, "/v1/analytics/unanswered", limit=100)
        analytics = _timed(http, "/v1/analytics", requests)
        unanswered = _timed(http, "/v1/analytics/unanswered", requests)
        recompute_s = asyncio.run(_recompute_s(s.mongo_url, app_id, min(days, 5)))
    ms = 1000.0
    return {
        "turns": turns,
        "publish_s": round(published_s, 1),
        "load_s": round(loaded_s, 1),
        "turns_per_s": round(turns / loaded_s, 1),
        "ratings": rated,
        "rate_s": round(rated_s, 1),
        "ratings_counted_s": round(ratings_counted_s, 1),
        "recompute_day_ms": round(recompute_s * ms, 1),
        "days": days,
        "turns_per_day": round(turns / days),
        "unanswered_groups_first_page": len(page["groups"]),
        "top_question_count": report["top_questions"][0]["count"],
        "analytics_p50_ms": round(statistics.median(analytics) * ms, 1),
        "analytics_p95_ms": round(percentile(analytics, 0.95) * ms, 1),
        "unanswered_p50_ms": round(statistics.median(unanswered) * ms, 1),
        "unanswered_p95_ms": round(percentile(unanswered, 0.95) * ms, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--turns", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=DAYS, help="over how many days the turns are spread")
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    result = measure(args.turns, days=args.days, requests=args.requests)
    for name, value in result.items():
        print(f"{name:>30}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
