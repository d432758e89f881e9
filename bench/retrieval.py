"""Retrieval quality and speed on a BEIR dataset, through the product's own code.

Indexes the corpus with the ingest chunker and the product's HybridIndex (the
embedder of OBDAL_EMBED_MODEL, Qdrant Edge unless OBDAL_QDRANT_URL is set), then
runs every test query in BM25-only, dense-only and hybrid mode, and prints
nDCG@10 and recall@100 for each, index time, query latency, the embedder's own
cost (model load, one query's embedding), and last a JSON line.

    .venv/bin/python bench/retrieval.py [--dataset PATH] [--limit-queries Q] [--limit-docs N] [--data-dir DIR]

--limit-queries and --limit-docs make a subset for smoke runs (bench/stream.py --quick): the
first Q test queries, and N documents, those relevant to the queries kept first, then the
others in corpus order. The subset's scores are higher than the whole corpus' (fewer
distractors), so compare them only with runs of the same subset.

With --data-dir the index is kept there, and a later run with the same DIR reuses it
instead of indexing again (a full SciFact index with the MiniLM embedder takes minutes).

PATH is a folder in BEIR layout: corpus.jsonl, queries.jsonl, qrels/test.tsv
(default: ../shared/datasets/scifact next to the repository).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from obdal_common.settings import ObdalSettings
from obdal_ingest.chunking import chunk_text
from obdal_retrieval import Chunk, close_indexes, open_index
from obdal_retrieval.hybrid import HybridIndex, SearchMode

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATASET = ROOT.parent / "shared" / "datasets" / "scifact"
APP = "app_bench"
MODES: tuple[SearchMode, ...] = ("sparse", "dense", "hybrid")
LABEL = {"sparse": "bm25", "dense": "dense", "hybrid": "hybrid"}
DEPTH = 100
# nDCG@10 is measured as the chat searches: a short list, so the fusion sees the product's own
# prefetch depth (HybridIndex: 50 per list). Recall@100 needs a deeper, separate search.
TOP_CHUNKS = 30


def load(dataset: Path) -> tuple[dict[str, dict[str, str]], dict[str, str], dict[str, dict[str, int]]]:
    corpus = {}
    with (dataset / "corpus.jsonl").open() as lines:
        for line in lines:
            doc = json.loads(line)
            corpus[str(doc["_id"])] = {"title": doc.get("title", ""), "text": doc.get("text", "")}
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    with (dataset / "qrels" / "test.tsv").open() as lines:
        for line in lines:
            parts = line.strip().split("\t")
            if len(parts) == 3 and parts[2].isdigit():
                qrels[parts[0]][parts[1]] = int(parts[2])
    queries = {}
    with (dataset / "queries.jsonl").open() as lines:
        for line in lines:
            query = json.loads(line)
            if str(query["_id"]) in qrels:
                queries[str(query["_id"])] = query["text"]
    return corpus, queries, qrels


def subset(
    corpus: dict[str, dict[str, str]],
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    *,
    limit_queries: int,
    limit_docs: int,
) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """The first ``limit_queries`` queries, and ``limit_docs`` documents: theirs first (0: all)."""
    if limit_queries:
        queries = dict(list(queries.items())[:limit_queries])
    if limit_docs:
        relevant = [doc for query in queries for doc in qrels[query] if doc in corpus]
        kept = list(dict.fromkeys([*relevant, *corpus]))[:limit_docs]
        corpus = {doc: corpus[doc] for doc in kept}
    return corpus, queries


def ndcg_at_10(ranked: list[str], relevant: dict[str, int]) -> float:
    dcg = sum(relevant.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:10]))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    idcg = sum(gain / math.log2(rank + 2) for rank, gain in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at_100(ranked: list[str], relevant: dict[str, int]) -> float:
    found = {doc for doc in ranked[:DEPTH] if relevant.get(doc, 0) > 0}
    return len(found) / len([d for d, g in relevant.items() if g > 0])


def percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_ms": round(ordered[len(ordered) // 2], 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
    }


async def build(index: HybridIndex, corpus: dict[str, dict[str, str]]) -> tuple[int, float]:
    """Chunk every document as ingest does and index it; (chunks, seconds)."""
    started = time.perf_counter()
    chunks: list[Chunk] = []
    for doc_id, doc in corpus.items():
        for position, piece in enumerate(chunk_text(doc["text"])):
            chunks.append(
                Chunk(
                    app_id=APP,
                    file_id=doc_id,
                    filename=f"{doc_id}.txt",
                    position=position,
                    text=piece.text,
                    heading=piece.heading,
                    title=doc["title"],
                )
            )
    await index.add(chunks)
    return len(chunks), time.perf_counter() - started


async def run(
    index: HybridIndex, queries: dict[str, str], qrels: dict[str, dict[str, int]], mode: SearchMode
) -> dict[str, float]:
    ndcgs, recalls, latencies = [], [], []
    for query_id, text in queries.items():
        started = time.perf_counter()
        top = await index.search(APP, text, limit=TOP_CHUNKS, mode=mode)
        latencies.append((time.perf_counter() - started) * 1000)
        deep = await index.search(APP, text, limit=DEPTH * 2, mode=mode)
        # Documents ranked by their best chunk.
        ndcgs.append(ndcg_at_10(list(dict.fromkeys(hit.file_id for hit in top)), qrels[query_id]))
        recalls.append(recall_at_100(list(dict.fromkeys(hit.file_id for hit in deep)), qrels[query_id]))
    return {
        "ndcg@10": round(statistics.fmean(ndcgs), 4),
        "recall@100": round(statistics.fmean(recalls), 4),
        **percentiles(latencies),
    }


async def embed_latency(index: HybridIndex, queries: dict[str, str]) -> dict[str, float]:
    """Embedding one query, alone: the share of the dense and hybrid latency that is the model's."""
    latencies = []
    for text in queries.values():
        started = time.perf_counter()
        await index.embedder.embed([text])
        latencies.append((time.perf_counter() - started) * 1000)
    return percentiles(latencies)


async def evaluate(
    dataset: Path, *, limit_queries: int = 0, limit_docs: int = 0, data_dir: Path | None = None
) -> dict[str, Any]:
    """Index the dataset (or reuse the index kept in ``data_dir``), run its queries in every mode,
    print the table, and return the summary (bench/stream.py calls it in its own process)."""
    corpus, queries, qrels = load(dataset)
    corpus, queries = subset(corpus, queries, qrels, limit_queries=limit_queries, limit_docs=limit_docs)
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = data_dir or Path(scratch)
        data_dir.mkdir(parents=True, exist_ok=True)
        settings = ObdalSettings(data_dir=data_dir)
        started = time.perf_counter()
        index = await open_index(settings)
        load_s = time.perf_counter() - started
        # Each embedder has its own index in the same data dir (see docs/retrieval.md).
        built = data_dir / f"bench-{index.embedder.model_id.replace('/', '_')}-{len(corpus)}.json"
        if built.exists():
            chunks, index_s = json.loads(built.read_text())
        else:
            chunks, index_s = await build(index, corpus)
            built.write_text(json.dumps([chunks, index_s]))
        print(
            f"dataset {dataset.name}: {len(corpus)} documents -> {chunks} chunks, {len(queries)} test queries"
        )
        print(f"default mode {LABEL[index.mode]} (OBDAL_RETRIEVAL_MODE={settings.retrieval_mode})")
        print(
            f"embedder {index.embedder.model_id} (index opened, model loaded in {load_s:.1f} s); "
            f"backend {settings.qdrant_url or 'qdrant-edge (embedded)'}"
        )
        print(
            f"index time {index_s:.1f} s "
            f"({len(corpus) / index_s:.0f} docs/s, {chunks / index_s:.0f} chunks/s)"
        )
        results = {}
        print(f"{'mode':<8} {'nDCG@10':>8} {'R@100':>7} {'p50 ms':>8} {'p99 ms':>8}")
        for mode in MODES:
            result = await run(index, queries, qrels, mode)
            results[LABEL[mode]] = result
            print(
                f"{LABEL[mode]:<8} {result['ndcg@10']:>8.4f} {result['recall@100']:>7.4f} "
                f"{result['p50_ms']:>8.2f} {result['p99_ms']:>8.2f}"
            )
        query_embedding = await embed_latency(index, queries)
        print(
            f"query embedding alone: p50 {query_embedding['p50_ms']:.2f} ms, "
            f"p99 {query_embedding['p99_ms']:.2f} ms"
        )
        await close_indexes()
    embedder_info = {"model": index.embedder.model_id, "load_s": round(load_s, 2), "query": query_embedding}
    index_info = {
        "documents": len(corpus),
        "queries": len(queries),
        "chunks": chunks,
        "seconds": round(index_s, 2),
    }
    index_info["default_mode"] = LABEL[index.mode]
    summary = {name: results[name] for name in ("hybrid", "bm25", "dense")}
    return {**summary, "index": index_info, "embedder": embedder_info}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument(
        "--limit-docs", type=int, default=0, help="index only N documents (smoke runs; see above)"
    )
    parser.add_argument("--limit-queries", type=int, default=0, help="run only the first Q test queries")
    parser.add_argument("--data-dir", type=Path, help="keep the index here; reuse it if already built")
    args = parser.parse_args()
    summary = await evaluate(
        args.dataset, limit_queries=args.limit_queries, limit_docs=args.limit_docs, data_dir=args.data_dir
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    asyncio.run(main())
