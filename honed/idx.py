"""IDX arrays (the MNIST file format: magic, dims, big-endian sizes, uint8 data), gzip-compressed, as
Fashion-MNIST ships them; read by the image data sources and the mosaic asset generator."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def read_idx(path: Path) -> np.ndarray:
    """An IDX gzip array (MNIST format: magic, dims, big-endian sizes, uint8 data)."""
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)
