"""Load a split's source (a file, folder, asset or in-memory data) into a standard frame."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from honed.assets import FASHION_MNIST_CLASSES, resolve_data_path
from honed.data.multilabel import read_label_sets
from honed.data.tables import clean_labels, read_table, require_columns
from honed.data.targets import looks_like_regression, target_columns
from honed.errors import HonedError
from honed.idx import read_idx
from honed.recipe import DataSpec, Recipe

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


META = "meta:"  # standard-frame prefix of metadata columns kept for the report's slices


def slice_columns(recipe: Recipe) -> tuple[str, ...]:
    """Source columns a run keeps beside x/label as `meta:NAME` (the recipe's `report.slices`)."""
    return tuple(recipe.report.slices)


def load_source(
    source: Any,
    spec: DataSpec,
    field: str,
    keep: tuple[str, ...] = (),
    scoring: bool = False,
    task: str = "classification",
) -> pd.DataFrame:
    """A standard frame (x, [x2], label, [group], [meta:NAME...]) from a path/asset string or in-memory
    data; `keep` names metadata columns to carry along (a missing one is an error naming it).

    `scoring` (evaluate) reads only what the model needs, text, pair and label: the group column and
    slice columns only matter when training splits and reports, so they are kept when present.

    `task` says how the label column(s) read: class names (`label`), numeric targets (`target:NAME`), or
    `auto`: decided from the values (`frame.attrs["task"]` says what was chosen)."""
    if isinstance(source, str | Path):
        path = resolve_data_path(str(source), field)
        frame = _load_path(path, spec, field, keep, scoring, task)
    else:
        frame = from_memory(source, spec, field, keep, scoring, task)
    if keep and not scoring and not any(c.startswith(META) for c in frame.columns):
        raise HonedError(
            f"report.slices: {field} has no columns (an image folder or an (X, y) pair), so it cannot "
            f"slice by '{keep[0]}'; use a table file or remove report.slices"
        )
    return frame


def _load_path(
    path: Path,
    spec: DataSpec,
    field: str,
    keep: tuple[str, ...] = (),
    scoring: bool = False,
    task: str = "classification",
) -> pd.DataFrame:
    if path.name.endswith("-idx3-ubyte.gz"):
        return _idx_images(path, field)
    if spec.kind == "image" and path.is_dir():
        return _image_folder(path, field)
    return _from_table(read_table(path, field), spec, str(path), path.parent, keep, scoring, task)


def _from_table(
    frame: pd.DataFrame,
    spec: DataSpec,
    source: str,
    base: Path,
    keep: tuple[str, ...] = (),
    scoring: bool = False,
    task: str = "classification",
) -> pd.DataFrame:
    """A table's named columns as a standard frame; image paths resolve against `base`."""
    if scoring:
        keep = tuple(name for name in keep if name in frame.columns)
        if spec.group_column not in frame.columns:
            spec = spec.model_copy(update={"group_column": None})
    for name in keep:
        require_columns(frame, {"report.slices": name}, source)
    for column in label_columns(spec):
        require_columns(frame, {"data.label_column": column}, source)
    if spec.kind == "image":
        require_columns(frame, {"data.path_column": spec.path_column}, source)
        paths = frame[spec.path_column].astype(str).map(lambda p: str((base / p).resolve()))
        return _with_meta(_standard(frame, paths, None, spec, source, task), frame, keep)
    require_columns(
        frame,
        {
            "data.text_column": spec.text_column,
            "data.text_pair_column": spec.text_pair_column,
            "data.group_column": spec.group_column,
        },
        source,
    )
    pair = frame[spec.text_pair_column] if spec.text_pair_column else None
    return _with_meta(_standard(frame, frame[spec.text_column], pair, spec, source, task), frame, keep)


def label_columns(spec: DataSpec) -> list[str]:
    """`data.label_column` as a list (regression may name several target columns)."""
    return list(spec.label_column) if isinstance(spec.label_column, list) else [spec.label_column]


def _class_labels(frame: pd.DataFrame, names: list[str], spec: DataSpec, source: str) -> pd.DataFrame:
    return pd.DataFrame({"label": clean_labels(frame[names[0]], source, spec.normalise_labels)}, index=frame.index)


# How each task reads its label column(s) into the standard frame.
LABEL_READERS = {
    "classification": _class_labels,
    "regression": lambda frame, names, spec, source: target_columns(frame, names, source),
    "multilabel": read_label_sets,
}


def read_labels(frame: pd.DataFrame, names: list[str], spec: DataSpec, source: str, task: str) -> pd.DataFrame:
    """The label columns of a standard frame per `task`; `auto` decides from the values and logs nothing
    itself (the caller announces `attrs["task"]`)."""
    if task == "auto":
        task = "regression" if looks_like_regression(frame, names) else "classification"
    labels = LABEL_READERS[task](frame, names, spec, source)
    labels.attrs["task"] = task
    return labels


def _with_meta(out: pd.DataFrame, frame: pd.DataFrame, keep: tuple[str, ...]) -> pd.DataFrame:
    for name in keep:
        out[META + name] = frame[name]
    return out


def _standard(
    frame: pd.DataFrame, x: pd.Series, x2: pd.Series | None, spec: DataSpec, source: str, task: str = "classification"
) -> pd.DataFrame:
    out = pd.DataFrame({"x": x.fillna("") if spec.kind == "text" else x}, index=frame.index)
    if x2 is not None:
        out["x2"] = x2.fillna("").astype(str)
    labels = read_labels(frame, label_columns(spec), spec, source, task)
    out[list(labels.columns)] = labels
    if spec.group_column:
        out["group"] = frame[spec.group_column].astype(str)
    if spec.kind == "text":
        out["x"] = out["x"].astype(str)
    out.attrs["task"] = labels.attrs["task"]
    return out


def _image_folder(root: Path, field: str) -> pd.DataFrame:
    """One subfolder per class; files with image extensions inside (recursively, through symlinks).
    Other files (notes, .DS_Store, Thumbs.db) are left out, counted in a note (`frame.attrs["notes"]`)."""
    rows: list[tuple[str, str]] = []
    others: list[Path] = []
    for cls in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
        for path in walk_files(cls):
            if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):  # ._x.jpg: macOS metadata
                rows.append((str(path), cls.name))
            else:
                others.append(path)
    if not rows:
        raise HonedError(f"{field}: folder '{root}' holds no images in class subfolders (root/CLASS/image.png)")
    frame = pd.DataFrame(rows, columns=["x", "label"])
    if others:
        names = ", ".join(str(p.relative_to(root)) for p in others[:5]) + (", ..." if len(others) > 5 else "")
        frame.attrs["notes"] = [f"{field}: ignored {len(others)} files that are not images ({names})"]
    return frame


def walk_files(folder: Path) -> list[Path]:
    """Files under `folder` in sorted order, following symlinked files and folders (each real folder
    once, so a link back up the tree cannot loop)."""
    found: list[Path] = []
    seen: set[str] = set()
    for top, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(top) / name for name in sorted(files))
    return sorted(found)


def _idx_images(images: Path, field: str) -> pd.DataFrame:
    """IDX gzip images (MNIST format) with the matching `*-labels-idx1-ubyte.gz` beside them."""
    labels_path = images.with_name(images.name.replace("-images-idx3-ubyte.gz", "-labels-idx1-ubyte.gz"))
    if not labels_path.is_file():
        raise HonedError(f"{field}: labels file '{labels_path.name}' missing beside '{images}'")
    try:
        pixels, labels = read_idx(images), read_idx(labels_path)
    except (OSError, ValueError, IndexError) as exc:
        raise HonedError(f"{field}: '{images}' is not a valid IDX gzip file ({exc})") from exc
    names = FASHION_MNIST_CLASSES if "fashion" in str(images).lower() else [str(i) for i in range(10)]
    return pd.DataFrame({"x": list(pixels), "label": [names[int(i)] for i in labels]})


def from_memory(
    source: Any,
    spec: DataSpec,
    field: str,
    keep: tuple[str, ...] = (),
    scoring: bool = False,
    task: str = "classification",
) -> pd.DataFrame:
    """A DataFrame, an (X, y) pair of sequences, or a torch Dataset yielding (x, y)."""
    if isinstance(source, pd.DataFrame):
        return _from_table(source.reset_index(drop=True), spec, field, Path("."), keep, scoring, task)
    if isinstance(source, tuple) and len(source) == 2:
        xs, ys = list(source[0]), list(source[1])
    elif hasattr(source, "__getitem__") and hasattr(source, "__len__"):
        pairs = [source[i] for i in range(len(source))]
        xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
    else:
        raise HonedError(
            f"{field}: expected a path, a DataFrame, an (X, y) pair or a torch Dataset, got {type(source).__name__}"
        )
    if len(xs) != len(ys):
        raise HonedError(f"{field}: X has {len(xs)} rows but y has {len(ys)}")
    if task == "classification":  # unchanged: numbers become class names
        ys = [int(y.item()) if hasattr(y, "item") else y for y in ys]
    if task in ("classification", "multilabel"):  # multi-label: each y a list of labels, or a cell such as "a|b"
        frame = pd.DataFrame({"x": pd.Series(xs, dtype=object), "y": pd.Series(ys, dtype=object)})
    else:  # y may be (rows, targets): one target column each, named by data.label_column when it lists them
        frame = _target_frame(xs, ys, label_columns(spec))
    out = pd.DataFrame({"x": frame["x"]})
    labels = read_labels(frame, [c for c in frame.columns if c != "x"], spec, field, task)
    out[list(labels.columns)] = labels
    if spec.kind == "text":
        out["x"] = out["x"].fillna("").astype(str)
    out.attrs["task"] = labels.attrs["task"]
    return out


def _target_frame(xs: list[Any], ys: list[Any], names: list[str]) -> pd.DataFrame:
    """An (X, y) pair as a frame with one column per target: y of shape (rows,) or (rows, targets)."""
    rows = [np.asarray(y.tolist() if hasattr(y, "tolist") else y, dtype=object).ravel() for y in ys]
    values = np.asarray(rows, dtype=object)
    width = values.shape[1] if values.ndim == 2 else 1
    columns = names if len(names) == width else (["y"] if width == 1 else [f"y{j}" for j in range(width)])
    frame = pd.DataFrame(values.reshape(len(ys), width), columns=columns)
    frame = frame.apply(lambda c: pd.to_numeric(c) if c.map(_is_number).all() else c)
    frame.insert(0, "x", pd.Series(xs, dtype=object))
    return frame


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
