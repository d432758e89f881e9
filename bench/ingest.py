"""Ingestion throughput per format: documents/s, chunks/s and MB/s.

Runs the ingest worker's own path in-process: the sandboxed parser process
(parse + chunk), then embedding and indexing in batches into a fresh Qdrant
Edge shard with the configured embedder (default: the offline hashing one).
NATS and the object store are left out: they add ~1 ms per document.

    .venv/bin/python bench/ingest.py [--docs 20]

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from obdal_common.formats import CSV, DOCX, HTML, MARKDOWN, PDF
from obdal_ingest.parser_pool import ParserPool
from obdal_ingest.settings import IngestSettings
from obdal_retrieval import Chunk, HybridIndex, close_indexes, open_index
from tests import documents

VOCABULARY = (
    "order invoice refund delivery parcel account password router firmware warranty plan seat price "
    "customer support ticket shipping return exchange card payment subscription renewal cancel update "
    "device screen battery charger cable login profile email address country tax receipt discount"
)
WORDS = VOCABULARY.split(" ")


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 18))).capitalize() + "."


def paragraph(rng: random.Random) -> str:
    return " ".join(sentence(rng) for _ in range(rng.randint(3, 6)))


def make_pdf(rng: random.Random) -> bytes:
    return documents.pdf([" ".join(paragraph(rng) for _ in range(4)) for _ in range(8)], title="Manual")


def make_docx(rng: random.Random) -> bytes:
    sections = {f"Section {n}": [paragraph(rng) for _ in range(4)] for n in range(6)}
    table = [["Item", "Price", "Notes"]] + [[f"item {n}", f"{n} EUR", sentence(rng)] for n in range(20)]
    return documents.word(title="Handbook", sections=sections, table=table)


def make_html(rng: random.Random) -> bytes:
    body = "".join(
        f"<h2>Topic {n}</h2>" + "".join(f"<p>{paragraph(rng)}</p>" for _ in range(4)) for n in range(6)
    )
    return documents.html(title="Help center", main=body, chrome="Home Products Careers Contact")


def make_csv(rng: random.Random) -> bytes:
    return documents.table_csv(
        [["question", "answer"]] + [[sentence(rng), paragraph(rng)] for _ in range(40)]
    )


def make_md(rng: random.Random) -> bytes:
    return "\n\n".join(
        f"## Topic {n}\n\n" + "\n\n".join(paragraph(rng) for _ in range(4)) for n in range(6)
    ).encode()


FORMATS: dict[str, tuple[str, Callable[[random.Random], bytes]]] = {
    "pdf": (PDF, make_pdf),
    "docx": (DOCX, make_docx),
    "html": (HTML, make_html),
    "csv": (CSV, make_csv),
    "md": (MARKDOWN, make_md),
}


class Bench:
    """The ingest path of one worker, one file at a time as it consumes jobs; time split by stage."""

    def __init__(self, settings: IngestSettings, index: HybridIndex, pool: ParserPool) -> None:
        self.settings = settings
        self.index = index
        self.pool = pool
        self.parse_s = 0.0
        self.index_s = 0.0

    async def ingest(self, file_id: str, data: bytes, content_type: str) -> int:
        start = time.perf_counter()
        extracted = await self.pool.extract(
            data,
            content_type=content_type,
            max_pages=self.settings.max_pages,
            target_tokens=self.settings.chunk_tokens,
            overlap_tokens=self.settings.chunk_overlap_tokens,
        )
        parsed = time.perf_counter()
        chunks = [
            Chunk(
                app_id="app_bench",
                file_id=file_id,
                filename=file_id,
                position=p,
                text=c.text,
                heading=c.heading,
                page=c.page,
                title=extracted.title,
            )
            for p, c in enumerate(extracted.chunks)
        ]
        # Batches of OBDAL_EMBED_BATCH_SIZE, as the pipeline does.
        batch = self.settings.embed_batch_size
        for first in range(0, len(chunks), batch):
            await self.index.add(chunks[first : first + batch])
        self.parse_s += parsed - start
        self.index_s += time.perf_counter() - parsed
        return len(chunks)

    async def measure(self, name: str, content_type: str, files: list[bytes]) -> dict[str, float]:
        self.parse_s = self.index_s = 0.0
        start = time.perf_counter()
        chunks = 0
        for n, data in enumerate(files):
            chunks += await self.ingest(f"file_{name}{n}", data, content_type)
        elapsed = time.perf_counter() - start
        megabytes = sum(len(f) for f in files) / 1e6
        return {
            "documents": len(files),
            "chunks": chunks,
            "megabytes": round(megabytes, 3),
            "seconds": round(elapsed, 3),
            "documents_per_s": round(len(files) / elapsed, 2),
            "chunks_per_s": round(chunks / elapsed, 1),
            "mb_per_s": round(megabytes / elapsed, 3),
            "parse_share": round(self.parse_s / (self.parse_s + self.index_s), 2),
        }


async def run(docs: int) -> dict[str, dict[str, float]]:
    settings = IngestSettings(data_dir=Path(tempfile.mkdtemp(prefix="obdal-bench-")))
    pool = ParserPool(timeout_s=settings.parse_timeout_s, memory_mb=settings.parse_memory_mb)
    bench = Bench(settings, await open_index(settings), pool)
    rng = random.Random(7)
    try:
        # Warm the parser process (spawn + imports) outside the measurement.
        await bench.measure("warmup", MARKDOWN, [make_md(rng)])
        return {
            name: await bench.measure(name, content_type, [make(rng) for _ in range(docs)])
            for name, (content_type, make) in FORMATS.items()
        }
    finally:
        pool.close()
        await close_indexes()


def print_table(results: dict[str, dict[str, float]]) -> None:
    """One line per format."""
    print(
        f"{'format':<6} {'docs':>5} {'chunks':>7} {'MB':>7} "
        f"{'docs/s':>8} {'chunks/s':>9} {'MB/s':>7} {'parse':>6}"
    )
    for name, r in results.items():
        print(
            f"{name:<6} {r['documents']:>5} {r['chunks']:>7} {r['megabytes']:>7.2f} "
            f"{r['documents_per_s']:>8.2f} {r['chunks_per_s']:>9.1f} {r['mb_per_s']:>7.3f} "
            f"{r['parse_share']:>6.0%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=20, help="documents per format")
    args = parser.parse_args()
    results = asyncio.run(run(args.docs))
    print_table(results)
    print(json.dumps({"benchmark": "ingest", "formats": results}))


if __name__ == "__main__":
    main()
