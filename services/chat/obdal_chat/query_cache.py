"""Repeated questions are cheap: their embeddings and searches, cached per app, in a bounded LRU.

Two caches in ``OBDAL_CHAT_QUERY_CACHE_MB``, each a :class:`~obdal_chat.lru.FairLru` by app:

- **Embeddings** of a question, by its exact text (this worker has one embedder): a vector
  depends on nothing an app changes, so it never goes stale. Per app rather than shared, so one
  busy app cannot evict every other app's; the same question asked in two apps is embedded twice.
- **Searches** (:func:`obdal_chat.grounding.ground`'s passages), by the question, the earlier
  question retrieval is given for a follow-up, the number of passages asked for, the relevance
  floor and whether the question's own vector was searched with. Each is kept with the app's
  index generation (:class:`obdal_retrieval.generations.IndexGenerations`) read *before* it
  searched, and served only while the generation read for the new question is the same: ingest
  bumps it after every write or delete of the app's passages and before it reports a file ready
  or deleted, so a question asked after that report misses and searches again. The generation
  is read by a KV get on every question (not a watched mirror, which may not have seen a bump
  yet when the next question comes). Measured (``bench/query_cache.py``, docs/performance.md): the get
  costs 0.34 ms, a watch sees a put 0.33 ms (p50) to 3 ms (p99) after it; a repeated question's
  retrieval takes 0.42 ms instead of 9.1 ms (embed + search), 22x less.

Curated answers are not cached: they are matched against their own watched mirror on every
question (:mod:`obdal_chat.curated`), with the cached vector; only what the generation covers,
the index's passages, is. If the generation cannot be read (NATS unavailable), the question is
searched and nothing is cached.
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

import nats.errors
from opentelemetry import metrics

from obdal_chat import smalltalk
from obdal_chat.grounding import Grounding, ground
from obdal_chat.lru import FairLru
from obdal_common.schemas import DependencyStatus
from obdal_retrieval import Hit, HybridIndex
from obdal_retrieval.generations import IndexGenerations

__all__ = ["QueryCache"]

log = logging.getLogger(__name__)
_meter = metrics.get_meter(__name__)
_lookups = _meter.create_counter(
    "obdal.chat.cache.lookups",
    unit="{lookup}",
    description="Query cache lookups, by cache (embedding, search) and outcome (hit, miss)",
)

# The embeddings' share of the budget; the searches get the rest. An embedding entry takes
# ~2 KB (384 float32s: every embedder here computes in float32, so they come back exact); a
# search entry 0.4-8 KB (none to ten passages of ~200 tokens; 1.2 KB on average over the bench's
# questions, many declined): a quarter keeps ~8,000 embeddings and at least ~6,000 searches in 64 MB.
_EMBEDDING_SHARE = 0.25
# Bytes an entry takes beyond its strings and floats: the key tuple, the ordered dict's slot, the
# value's objects. With them the estimate was within 3% of tracemalloc's count (bench/query_cache.py).
_ENTRY_OVERHEAD = 400
_HIT_OVERHEAD = 450

_SearchKey = tuple[str, tuple[str, ...], int, float, bool]


@dataclass(frozen=True, slots=True)
class _Search:
    generation: int
    grounding: Grounding


@dataclass(slots=True)
class _Counts:
    hits: int = 0
    misses: int = 0

    def count(self, cache: str, *, hit: bool) -> None:
        if hit:
            self.hits += 1
        else:
            self.misses += 1
        _lookups.add(1, {"obdal.cache": cache, "obdal.cache.outcome": "hit" if hit else "miss"})

    def __str__(self) -> str:
        asked = self.hits + self.misses
        return f"{self.hits} of {asked} hit ({self.hits / asked:.0%})" if asked else "none asked"


def _hit_bytes(hit: Hit) -> int:
    return _HIT_OVERHEAD + len(hit.text) + len(hit.heading) + len(hit.filename) + len(hit.url)


class QueryCache:
    """A worker's cached question embeddings and searches over ``index``, ``max_bytes`` in all."""

    def __init__(self, index: HybridIndex, *, generations: IndexGenerations, max_bytes: int) -> None:
        self._index = index
        self._generations = generations
        self._vectors: FairLru[str, array[float]] = FairLru(max_bytes=int(max_bytes * _EMBEDDING_SHARE))
        self._searches: FairLru[_SearchKey, _Search] = FairLru(max_bytes=max_bytes - self._vectors.max_bytes)
        self._vector_counts = _Counts()
        self._search_counts = _Counts()

    async def embed(self, app_id: str, question: str) -> list[float]:
        """``question``'s vector by the index's embedder."""
        cached = self._vectors.get(app_id, question)
        self._vector_counts.count("embedding", hit=cached is not None)
        if cached is not None:
            return cached.tolist()
        vector = (await self._index.embedder.embed([question]))[0]
        stored = array("f", vector)
        self._vectors.put(
            app_id, question, stored, size=_ENTRY_OVERHEAD + len(question) + stored.itemsize * len(stored)
        )
        return vector

    async def ground(
        self,
        app_id: str,
        question: str,
        *,
        context: Sequence[str],
        limit: int,
        min_relevance: float,
        dense: list[float] | None,
    ) -> Grounding:
        """:func:`~obdal_chat.grounding.ground`, from the cache while the app's index has not changed."""

        def search() -> Awaitable[Grounding]:
            return ground(
                self._index,
                app_id,
                question,
                context=context,
                limit=limit,
                min_relevance=min_relevance,
                dense=dense,
            )

        if smalltalk.classify(question) is not None or not self._searches.max_bytes:
            return await search()  # small talk searches nothing
        try:
            generation = await self._generations.current(app_id)
        except nats.errors.Error as exc:  # no generation to check against: search, keep nothing
            log.warning("index generation of %s unreadable, not caching: %r", app_id, exc)
            return await search()
        key: _SearchKey = (question, tuple(context), limit, min_relevance, dense is not None)
        cached = self._searches.get(app_id, key)
        hit = cached is not None and cached.generation == generation
        self._search_counts.count("search", hit=hit)
        if cached is not None and hit:
            return cached.grounding
        grounding = await search()
        newer = self._searches.get(app_id, key)
        if newer is None or newer.generation <= generation:  # one that searched later may be in already
            size = _ENTRY_OVERHEAD + len(question) + sum(map(len, context))
            size += sum(_hit_bytes(passage) for passage in grounding.passages)
            self._searches.put(app_id, key, _Search(generation, grounding), size=size)
        return grounding

    @property
    def bytes(self) -> int:
        """What the cached entries take, by their estimated sizes."""
        return self._vectors.bytes + self._searches.bytes

    async def status(self) -> DependencyStatus:
        """Hit rates and memory, for the worker's status report."""
        used = self.bytes / 2**20
        budget = (self._vectors.max_bytes + self._searches.max_bytes) / 2**20
        return DependencyStatus(
            ok=True,
            detail=f"searches {self._search_counts}, embeddings {self._vector_counts}; {len(self._searches)} "
            f"searches and {len(self._vectors)} embeddings in {used:.1f} of {budget:.0f} MB",
        )
