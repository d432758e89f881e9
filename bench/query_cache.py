"""What the query cache saves, and what its generation check costs, through the product's code.

Indexes the help centre (tests/data/helpcentre) with the configured embedder into Qdrant Edge,
starts a nats-server for the index generations, then measures in one run:

- a question's retrieval without the cache (embed + search), as chat did before, the baseline;
- the same through :class:`obdal_chat.query_cache.QueryCache`, missed (first time) and hit
  (asked again), as ratios to the baseline;
- the generation's KV get (what every question pays), a KV get on a direct-get bucket, and
  how late a watch reports a put (what a watched mirror would lag by);
- the memory the cached entries take (tracemalloc) against the cache's own estimate.

    .venv/bin/python bench/query_cache.py [--questions N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path

from nats.js.api import KeyValueConfig

from obdal.servers import nats_server
from obdal_chat.grounding import ground
from obdal_chat.query_cache import QueryCache
from obdal_common import subjects
from obdal_common.messaging import close, connect, ensure_topology, key_value
from obdal_common.settings import ObdalSettings
from obdal_ingest.chunking import chunk_text
from obdal_retrieval import Chunk, close_indexes, open_index
from obdal_retrieval.embedders import relevance_floor
from obdal_retrieval.generations import IndexGenerations

ROOT = Path(__file__).resolve().parent.parent
HELPCENTRE = ROOT / "tests" / "data" / "helpcentre"
APP = "app_bench"
TOP_K = 5


def questions(count: int) -> list[str]:
    labelled = json.loads((HELPCENTRE / "questions.json").read_text())
    asked = [item["q"] for item in labelled["answerable"]] + list(labelled["unanswerable"])
    intents = json.loads((ROOT / "bench" / "data" / "support_intents.json").read_text())["intents"]
    asked += [q for intent in intents for q in intent["questions"]]
    return list(dict.fromkeys(asked))[:count]


async def per_call_ms(calls: Callable[[], Awaitable[object]], rounds: int) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        await calls()
    return (time.perf_counter() - start) * 1000 / rounds


async def run(count: int, rounds: int) -> dict[str, float]:
    base = Path(tempfile.mkdtemp(prefix="obdal-qcache-"))
    server = nats_server(base / "nats").start()
    nc = await connect(server.url, name="bench-query-cache")
    try:
        js = nc.jetstream()
        await ensure_topology(js)
        kv = await key_value(js, subjects.KV_INDEX_GENERATIONS)
        generations = IndexGenerations(kv)
        index = await open_index(ObdalSettings(data_dir=base / "data"))
        chunks = [
            Chunk(
                app_id=APP, file_id=f"file_{n}", filename=doc.name, position=i, text=c.text, heading=c.heading
            )
            for n, doc in enumerate(sorted(HELPCENTRE.glob("*.md")))
            for i, c in enumerate(chunk_text(doc.read_text()))
        ]
        await index.add(chunks)
        await generations.bump(APP)
        floor = relevance_floor(index.embedder.model_id)
        asked = questions(count)

        async def baseline(q: str) -> None:
            vector = (await index.embedder.embed([q]))[0]
            await ground(index, APP, q, limit=TOP_K, min_relevance=floor, dense=vector)

        def cached(cache: QueryCache) -> Callable[[str], Awaitable[None]]:
            async def answer(q: str) -> None:
                vector = await cache.embed(APP, q)
                await cache.ground(APP, q, context=(), limit=TOP_K, min_relevance=floor, dense=vector)

            return answer

        for q in asked:  # warm the model and the shard
            await baseline(q)
        results: dict[str, float] = {}
        start = time.perf_counter()
        for _ in range(rounds):
            for q in asked:
                await baseline(q)
        results["baseline_ms"] = (time.perf_counter() - start) * 1000 / (rounds * len(asked))
        misses, hits = [], []
        for _ in range(rounds):
            cache = QueryCache(index, generations=generations, max_bytes=64 * 2**20)
            answer = cached(cache)
            start = time.perf_counter()
            for q in asked:
                await answer(q)
            misses.append((time.perf_counter() - start) * 1000 / len(asked))
            start = time.perf_counter()
            for q in asked:
                await answer(q)
            hits.append((time.perf_counter() - start) * 1000 / len(asked))
        results["miss_ms"] = statistics.median(misses)
        results["hit_ms"] = statistics.median(hits)
        results["kv_get_ms"] = await per_call_ms(lambda: generations.current(APP), 2000)
        direct = await js.create_key_value(KeyValueConfig(bucket="bench_direct", history=1, direct=True))
        await direct.put(APP, b"")
        results["kv_direct_get_ms"] = await per_call_ms(lambda: direct.get(APP), 2000)
        results["kv_put_ms"] = await per_call_ms(lambda: generations.bump(APP), 500)
        watcher = await kv.watch(APP, include_history=False)
        await watcher.updates(timeout=2)  # the current entry
        lags = []
        for _ in range(200):
            start = time.perf_counter()
            revision = await generations.bump(APP)
            while (entry := await watcher.updates(timeout=2)) is None or entry.revision != revision:
                pass
            lags.append((time.perf_counter() - start) * 1000)
        await watcher.stop()
        results["watch_lag_ms_p50"] = statistics.median(lags)
        results["watch_lag_ms_p99"] = sorted(lags)[int(len(lags) * 0.99) - 1]
        # Memory: entries kept for every question, measured against the cache's estimate.
        cache = QueryCache(index, generations=generations, max_bytes=64 * 2**20)
        answer = cached(cache)
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        for q in asked:
            await answer(q)
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        kept = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        results["bytes_per_question_measured"] = kept / len(asked)
        results["bytes_per_question_estimated"] = cache.bytes / len(asked)
        results["hit_ratio"] = results["baseline_ms"] / results["hit_ms"]
        results["miss_ratio"] = results["miss_ms"] / results["baseline_ms"]
        return results
    finally:
        await close_indexes()
        await close(nc)
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = asyncio.run(run(args.questions, args.rounds))
    print(
        f"retrieval per question: baseline (embed + search) {results['baseline_ms']:.2f} ms; "
        f"cached: first time {results['miss_ms']:.2f} ms ({results['miss_ratio']:.2f}x the baseline), "
        f"again {results['hit_ms']:.3f} ms (baseline / hit = {results['hit_ratio']:.0f}x)"
    )
    print(
        f"generation check: KV get {results['kv_get_ms']:.3f} ms "
        f"(direct get {results['kv_direct_get_ms']:.3f} ms), "
        f"bump {results['kv_put_ms']:.3f} ms; a watch sees a bump after {results['watch_lag_ms_p50']:.3f} ms "
        f"p50, {results['watch_lag_ms_p99']:.3f} ms p99"
    )
    print(
        f"memory per cached question: {results['bytes_per_question_measured']:.0f} B measured, "
        f"{results['bytes_per_question_estimated']:.0f} B estimated"
    )
    print(json.dumps({k: round(v, 4) for k, v in results.items()}))


if __name__ == "__main__":
    main()
