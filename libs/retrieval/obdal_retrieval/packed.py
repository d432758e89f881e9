"""Dense vectors as bytes: float16, little-endian, for vectors that travel in messages and KV.

A question's vector goes into every turn event and each curated question's into its record.
Float16 halves float32's size (768 bytes for MiniLM's 384 dimensions, 1 KB of JSON once
base64-encoded) and moves a unit vector's cosine similarities by less than 0.001, far below
any threshold's precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["pack", "unpack"]

_DTYPE = np.dtype("<f2")


def pack(vector: Sequence[float]) -> bytes:
    """``vector`` as float16 little-endian bytes."""
    return np.asarray(vector, dtype=_DTYPE).tobytes()


def unpack(data: bytes) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The vector :func:`pack` made, as float32."""
    return np.frombuffer(data, dtype=_DTYPE).astype(np.float32)
