"""Answer quality of the offline default: the labelled help-centre set, and the relevance floor.

Indexes tests/data/helpcentre (returns, shipping, warranty, accounts, an outage playbook)
with the product's chunker and index, asks every labelled question as the chat pipeline
does (small talk, grounding with the embedder's relevance floor, the extractive answerer),
and prints the share of answerable questions answered with the expected fact, answered
wrongly and declined; of unanswerable ones declined; of small talk answered without
sources. Then a sweep of the floor over the same questions (how the default was chosen),
and, with SciFact (``--scifact-docs N``, 0 to skip), how many of its claims keep a passage
over the floor on their own corpus and how many are declined against the help centre.
Last, a JSON line.

    .venv/bin/python bench/answers.py [--embed-model ID] [--min-relevance F] [--scifact-docs N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from retrieval import DEFAULT_DATASET, build, load, subset  # noqa: E402

from obdal_chat.grounding import ground  # noqa: E402
from obdal_common.settings import ObdalSettings  # noqa: E402
from obdal_retrieval import HybridIndex, close_indexes, open_index  # noqa: E402
from obdal_retrieval.embedders import relevance_floor  # noqa: E402
from obdal_retrieval.minilm import MINILM_MODEL_ID  # noqa: E402
from tests.answer_set import APP as HELPCENTRE_APP  # noqa: E402
from tests.answer_set import Report, ask_all, index_helpcentre, load_questions  # noqa: E402

SCIFACT_APP = "app_bench"  # bench/retrieval.py's build() indexes under this app
SWEEP = [round(0.20 + 0.05 * n, 2) for n in range(8)]


def table(report: Report) -> dict[str, Any]:
    answerable = report.counts("answerable")
    total = sum(answerable.values())
    result = {
        "answerable": total,
        "answered_with_fact": answerable["correct"] / total,
        "answered_wrongly": answerable["wrong"] / total,
        "declined": answerable["declined"] / total,
        "unanswerable": sum(report.counts("unanswerable").values()),
        "unanswerable_declined": report.share("unanswerable", "correct"),
        "smalltalk": sum(report.counts("smalltalk").values()),
        "smalltalk_replied": report.share("smalltalk", "correct"),
    }
    print(f"answerable questions          {total:4d}")
    print(f"  answered with the fact      {result['answered_with_fact']:6.1%}   (target >= 85%)")
    print(f"  answered without it         {result['answered_wrongly']:6.1%}")
    print(f"  declined                    {result['declined']:6.1%}")
    print(f"unanswerable questions        {result['unanswerable']:4d}")
    print(f"  declined, no sources        {result['unanswerable_declined']:6.1%}   (target >= 90%)")
    print(f"small talk                    {result['smalltalk']:4d}")
    print(f"  replied, no sources         {result['smalltalk_replied']:6.1%}   (target 100%)")
    return result


def sweep(report: Report) -> list[dict[str, float]]:
    """Each floor's share of answerable questions kept and unanswerable ones declined (best relevance)."""
    rows = []
    print("\nfloor  answerable kept  unanswerable declined")
    for floor in SWEEP:
        kept = [j.top_relevance >= floor for j in report.judged if j.question.kind == "answerable"]
        declined = [j.top_relevance < floor for j in report.judged if j.question.kind == "unanswerable"]
        row = {"floor": floor, "kept": sum(kept) / len(kept), "declined": sum(declined) / len(declined)}
        rows.append(row)
        print(f"{floor:5.2f}  {row['kept']:15.1%}  {row['declined']:21.1%}")
    return rows


async def scifact(index: HybridIndex, docs: int, floor: float) -> dict[str, float]:
    corpus, queries, qrels = load(DEFAULT_DATASET)
    corpus, queries = subset(corpus, queries, qrels, limit_queries=0, limit_docs=docs)
    queries = {q: text for q, text in queries.items() if any(d in corpus for d in qrels[q])}
    chunks, seconds = await build(index, corpus)
    own = foreign = 0
    for text in queries.values():
        on_own = await ground(index, SCIFACT_APP, text, limit=5, min_relevance=floor)
        on_helpcentre = await ground(index, HELPCENTRE_APP, text, limit=5, min_relevance=floor)
        own += on_own.outcome == "answered"
        foreign += on_helpcentre.outcome == "declined"
    result = {
        "scifact_queries": len(queries),
        "scifact_chunks": chunks,
        "scifact_index_s": round(seconds, 1),
        "scifact_answered_on_own_corpus": own / len(queries),
        "scifact_declined_on_helpcentre": foreign / len(queries),
    }
    print(f"\nSciFact: {len(queries)} claims over {len(corpus)} documents ({chunks} chunks)")
    print(f"  a passage over the floor in their own corpus   {result['scifact_answered_on_own_corpus']:6.1%}")
    print(f"  declined against the help centre               {result['scifact_declined_on_helpcentre']:6.1%}")
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--embed-model", default=MINILM_MODEL_ID)
    parser.add_argument("--min-relevance", type=float, default=None, help="default: the embedder's floor")
    parser.add_argument("--scifact-docs", type=int, default=500, help="SciFact documents to index (0: skip)")
    args = parser.parse_args()
    floor = relevance_floor(args.embed_model) if args.min_relevance is None else args.min_relevance
    with tempfile.TemporaryDirectory() as data_dir:
        index = await open_index(ObdalSettings(data_dir=Path(data_dir), embed_model=args.embed_model))
        try:
            await index_helpcentre(index)
            started = time.perf_counter()
            questions = load_questions()
            report = await ask_all(index, questions, min_relevance=floor)
            per_question_ms = (time.perf_counter() - started) / len(questions) * 1000
            print(f"embedder {args.embed_model}, relevance floor {floor:.2f}\n")
            result: dict[str, Any] = {"embed_model": args.embed_model, "floor": floor, **table(report)}
            print(f"  {per_question_ms:.1f} ms per question (retrieval + answer)")
            result["ms_per_question"] = round(per_question_ms, 1)
            result["sweep"] = sweep(report)
            failures = report.failures()
            if failures:
                print("\nnot right:")
                for j in failures:
                    print(f"  [{j.question.kind}/{j.verdict} {j.top_relevance:.3f}] {j.question.text}")
            if args.scifact_docs:
                result |= await scifact(index, args.scifact_docs, floor)
        finally:
            await close_indexes()
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
