"""A constructed multi-label image set: 2x2 mosaics of real Fashion-MNIST images.

No offline multi-label image dataset exists, so `asset:fashion-mnist-mosaic/train` and `/test` are
constructed, and say so. Every tile is a real 28x28 Fashion-MNIST image; a mosaic (56x56, greyscale PNG)
holds four of them, and its labels are the distinct classes of its four tiles, `|`-joined (e.g.
`Bag|Sneaker`): the label set is exactly what the picture shows, no rule reads the pixels.

- No leakage: train mosaics draw tiles only from Fashion-MNIST's 60,000 training images, test mosaics only
  from its 10,000 test images (carve val out of the train mosaics). Within a split an image is reused only
  once every image of its class has been used (never at the shipped sizes: 6,000 train and 2,000 test
  mosaics need at most ~2,400 and ~800 images of a class).
- Varied label-set sizes: a mosaic first draws how many distinct classes it holds (1-4, shares
  SET_SIZE_SHARES), then that many distinct classes uniformly, then fills the four tiles with them (each
  class at least once, the spare tiles repeating chosen ones) in shuffled positions.
- Deterministic: a fixed seed per split; the same seed writes byte-identical files.
- Provenance: the CSV's `tiles` column lists the four source rows (the index in the split's IDX file),
  top-left, top-right, bottom-left, bottom-right, so every label set can be recomputed from the source.

Each split is one folder `fashion-mnist-mosaic-v1-<split>/` in the asset cache (honed.assets.assets_dir):
`mosaics.csv` (path, labels, tiles; paths relative to the CSV, as the image data kind reads them) and
`images/NNNNN.png`. It is built once, in a temp folder renamed into place, so a reader never sees half
of it. A changed rule bumps VERSION, which writes a new folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from honed.errors import HonedError
from honed.idx import read_idx

VERSION = "v1"
SPLITS: dict[str, tuple[int, int]] = {"train": (6000, 1401), "test": (2000, 1402)}  # split: (mosaics, seed)
SET_SIZE_SHARES = (0.2, 0.25, 0.3, 0.25)  # share of mosaics holding 1, 2, 3 and 4 distinct classes
TILE = 28
TABLE = "mosaics.csv"


def file_name(split: str) -> str:
    """The CSV of `split` relative to the derived-assets folder (the folder name carries the version)."""
    return f"fashion-mnist-mosaic-{VERSION}-{split}/{TABLE}"


def read_split(images: Path) -> tuple[np.ndarray, np.ndarray]:
    """(pixels N x 28 x 28, class ids N) of one Fashion-MNIST split, from its images file and the labels
    file beside it."""
    labels = images.with_name(images.name.replace("-images-idx3-ubyte.gz", "-labels-idx1-ubyte.gz"))
    try:
        pixels, classes = read_idx(images), read_idx(labels)
    except (OSError, ValueError, IndexError, EOFError) as exc:
        raise HonedError(f"fashion-mnist-mosaic: cannot read '{images}' and its labels file ({exc})") from exc
    if pixels.shape[1:] != (TILE, TILE) or len(pixels) != len(classes):
        raise HonedError(f"fashion-mnist-mosaic: '{images}' is not {TILE}x{TILE} images matching its labels file")
    return pixels, classes


def draw(classes: np.ndarray, count: int, seed: int, n_classes: int) -> np.ndarray:
    """`count` x 4 source rows: per mosaic a label-set size, that many distinct classes, four tiles of them."""
    rng = np.random.default_rng(seed)
    pools = [rng.permutation(np.flatnonzero(classes == c)) for c in range(n_classes)]
    if any(len(pool) == 0 for pool in pools):
        raise HonedError("fashion-mnist-mosaic: a class has no image in the source split")
    cursor = [0] * n_classes
    sizes = rng.choice(len(SET_SIZE_SHARES), size=count, p=SET_SIZE_SHARES) + 1
    rows = np.empty((count, 4), dtype=np.int64)
    for i, size in enumerate(sizes):
        chosen = rng.choice(n_classes, size=size, replace=False)
        tiles = np.concatenate([chosen, rng.choice(chosen, size=4 - size)])
        rng.shuffle(tiles)
        for j, c in enumerate(tiles):
            if cursor[c] == len(pools[c]):  # every image of the class used: a fresh order, reused from here
                pools[c], cursor[c] = rng.permutation(pools[c]), 0
            rows[i, j] = pools[c][cursor[c]]
            cursor[c] += 1
    return rows


def mosaic(pixels: np.ndarray, rows: Sequence[int]) -> np.ndarray:
    """The 56x56 picture of four source rows: top-left, top-right, bottom-left, bottom-right."""
    a, b, c, d = (pixels[r] for r in rows)
    return np.block([[a, b], [c, d]])


def build(source: Path, out: Path, count: int, seed: int, names: Sequence[str]) -> Path:
    """Write `count` mosaics of the split whose images file is `source` as `out` (a CSV) and the PNGs
    beside it, into a temp folder renamed to `out.parent` last; returns `out`."""
    import pandas as pd
    from PIL import Image

    pixels, classes = read_split(source)
    rows = draw(classes, count, seed, len(names))
    target = out.parent
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        (work / "images").mkdir()
        paths, labels = [], []
        for i, tiles in enumerate(rows):
            paths.append(f"images/{i:05d}.png")
            Image.fromarray(mosaic(pixels, tiles), mode="L").save(work / paths[-1], format="PNG")
            labels.append("|".join(sorted({names[int(classes[t])] for t in tiles})))
        table = pd.DataFrame({"path": paths, "labels": labels, "tiles": [" ".join(map(str, t)) for t in rows]})
        table.to_csv(work / out.name, index=False)  # last inside the folder: a folder with the CSV is complete
        _move_into_place(work, target, out.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _move_into_place(work: Path, target: Path, table: str) -> None:
    """Rename the finished temp folder to `target`; another process that finished first wins."""
    if target.exists() and not (target / table).is_file():
        shutil.rmtree(target)  # a folder without its CSV is not ours to trust: replaced whole
    try:
        os.replace(work, target)
    except OSError:
        if not (target / table).is_file():
            raise


def builder(split: str, names: Sequence[str]) -> Callable[[Path, Path], Path]:
    """build() with `split`'s count and seed: the (source, out) -> out shape honed.assets.derived calls."""
    count, seed = SPLITS[split]
    return lambda source, out: build(source, out, count, seed, names)
