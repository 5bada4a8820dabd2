"""asset:fashion-mnist-mosaic (issue 14): constructed multi-label images, 2x2 mosaics of real Fashion-MNIST
images. Checked apart from the code that writes them: every quadrant of every PNG is the source image its
`tiles` column names (read here from the IDX files with this file's own reader), the label set is those
tiles' classes, test mosaics hold test images only, a seed writes the same bytes, and the recipe reading
the asset loads as task multilabel. No model is trained here."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from honed import mosaics
from honed.assets import ASSETS_ENV, FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, resolve_data_path
from honed.errors import HonedError

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"train": "train", "test": "t10k"}

pytestmark = pytest.mark.skipif(not (FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
                                reason="Fashion-MNIST ships in Debian's dataset-fashion-mnist")


def idx(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(raw[3])]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * len(shape)).reshape(shape)


@pytest.fixture(scope="module")
def source() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per split: (images, class ids), straight from the installed IDX files."""
    return {split: (idx(FASHION_MNIST_DIR / f"{stem}-images-idx3-ubyte.gz"),
                    idx(FASHION_MNIST_DIR / f"{stem}-labels-idx1-ubyte.gz")) for split, stem in SOURCES.items()}


def build_small(root: Path, split: str, count: int = 60, seed: int = 7) -> Path:
    images = FASHION_MNIST_DIR / f"{SOURCES[split]}-images-idx3-ubyte.gz"
    return mosaics.build(images, root / "derived" / mosaics.file_name(split), count, seed, FASHION_MNIST_CLASSES)


def quadrants(path: Path) -> list[np.ndarray]:
    pixels = np.asarray(Image.open(path))
    assert pixels.shape == (56, 56)
    return [pixels[r: r + 28, c: c + 28] for r in (0, 28) for c in (0, 28)]


def check_mosaics(table: pd.DataFrame, base: Path, images: np.ndarray, classes: np.ndarray) -> None:
    """Every mosaic's quadrants are the source rows it names and its labels are their distinct classes."""
    for _, row in table.iterrows():
        tiles = [int(t) for t in row["tiles"].split()]
        for quadrant, tile in zip(quadrants(base / row["path"]), tiles, strict=True):
            assert np.array_equal(quadrant, images[tile])
        assert set(row["labels"].split("|")) == {FASHION_MNIST_CLASSES[classes[t]] for t in tiles}


def test_label_sets_are_the_classes_of_the_four_tiles(tmp_path: Path, source: dict) -> None:
    for split in SOURCES:
        csv = build_small(tmp_path, split)
        table = pd.read_csv(csv)
        check_mosaics(table, csv.parent, *source[split])
        assert len(table) == 60 and table["labels"].str.split("|").str.len().between(1, 4).all()


def test_test_mosaics_hold_test_images_only(tmp_path: Path, source: dict) -> None:
    """Every quadrant of a test mosaic is a test image (checked above) and equals no training image."""
    train_images = {image.tobytes() for image in source["train"][0]}
    csv = build_small(tmp_path, "test")
    table = pd.read_csv(csv)
    check_mosaics(table, csv.parent, *source["test"])
    for path in table["path"]:
        assert not any(q.tobytes() in train_images for q in quadrants(csv.parent / path))


def test_the_same_seed_writes_the_same_files(tmp_path: Path) -> None:
    first, again = build_small(tmp_path / "a", "test", 20), build_small(tmp_path / "b", "test", 20)
    files = sorted(p.relative_to(first.parent) for p in first.parent.rglob("*") if p.is_file())
    assert len(files) == 21 and files == sorted(p.relative_to(again.parent) for p in again.parent.rglob("*")
                                                if p.is_file())
    assert all((first.parent / f).read_bytes() == (again.parent / f).read_bytes() for f in files)
    other = build_small(tmp_path / "c", "test", 20, seed=8)
    assert other.read_bytes() != first.read_bytes()
    assert not [p for p in (tmp_path / "a" / "derived").iterdir() if p.name.startswith(".")]  # no temp folder left


def test_the_shipped_asset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: dict) -> None:
    """asset:fashion-mnist-mosaic/train and /test at their real sizes: built once into the asset cache,
    label-set sizes 1-4 each common, no source image drawn twice within a split, test tiles not in train."""
    monkeypatch.setenv(ASSETS_ENV, str(tmp_path))
    train_images = {image.tobytes() for image in source["train"][0]}
    for split, (count, _) in mosaics.SPLITS.items():
        path = resolve_data_path(f"asset:fashion-mnist-mosaic/{split}", "data.train")
        assert path.is_relative_to(tmp_path) and resolve_data_path(f"asset:fashion-mnist-mosaic/{split}", "x") == path
        table = pd.read_csv(path)
        sizes = table["labels"].str.split("|").str.len().value_counts(normalize=True)
        assert len(table) == count and set(sizes.index) == {1, 2, 3, 4} and sizes.min() > 0.15
        tiles = [int(t) for cell in table["tiles"] for t in cell.split()]
        assert len(set(tiles)) == len(tiles) == 4 * count and max(tiles) < len(source[split][0])
        check_mosaics(table.head(100), path.parent, *source[split])  # in full on a sample: the rule is checked above
        if split == "test":
            quads = [q.tobytes() for p in table["path"] for q in quadrants(path.parent / p)]
            assert len(quads) == 4 * count and not any(q in train_images for q in quads)


def test_the_recipe_loads_the_asset_as_multilabel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from honed.data.build import load_tables
    from honed.data.labels import LABELS
    from honed.recipe import load_recipe

    monkeypatch.setenv(ASSETS_ENV, str(tmp_path))
    built = {split: pd.read_csv(build_small(tmp_path, split, 80)) for split in SOURCES}  # the cache the asset reads
    tables = load_tables(load_recipe(ROOT / "recipes" / "multilabel-fashion-mosaic.yaml"))
    assert tables.task == "multilabel" and set(tables.labels.names) <= set(FASHION_MNIST_CLASSES)
    assert {k: len(f) for k, f in tables.frames.items()} == {"train": 64, "val": 16, "test": 80}
    for split, frame in (("train", tables.frames["train"]), ("test", tables.frames["test"])):
        expected = built[split].loc[frame.index, "labels"].str.split("|").map(lambda s: tuple(sorted(s)))
        assert frame[LABELS].tolist() == expected.tolist()
        assert all(Path(x).is_file() and x.startswith(str(tmp_path)) for x in frame["x"])


def test_a_missing_labels_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes((FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").read_bytes())
    with pytest.raises(HonedError, match="cannot read .* and its labels file"):
        mosaics.build(tmp_path / "t10k-images-idx3-ubyte.gz", tmp_path / "out" / "m.csv", 4, 0, FASHION_MNIST_CLASSES)
