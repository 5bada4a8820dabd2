"""Frames in and out of a saved predictor: the saved recipe, unlabelled inputs, the text
normalisation the model was trained with, labelled data checked against the predictor's classes,
and the output table of `honed predict`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from honed.assets import resolve_data_path
from honed.data.build import keep_labels
from honed.data.preprocess import normalise_texts
from honed.data.sources import IMAGE_SUFFIXES, load_source, slice_columns, walk_files
from honed.data.tables import iter_table, match_known, read_table, require_columns
from honed.errors import HonedError
from honed.recipe import Recipe, load_recipe


def saved_recipe(model_dir: Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """The recipe saved beside a model (recipe.yaml), with `overrides` applied."""
    path = Path(model_dir) / "recipe.yaml"
    if not path.is_file():
        raise HonedError(f"model '{model_dir}': no recipe.yaml beside the model; use RUN_DIR/model")
    return load_recipe(path, overrides)


def unlabelled_frame(source: Any, recipe: Recipe) -> pd.DataFrame:
    """Inputs without labels: a table file, an image folder, a DataFrame or a list of texts/paths."""
    if isinstance(source, list):
        return pd.DataFrame({"x": pd.Series(source, dtype=object)})
    base = Path(".")
    if isinstance(source, pd.DataFrame):
        frame = source.reset_index(drop=True)
    else:
        path = resolve_data_path(str(source), "input")
        if path.is_dir():
            files = [str(p) for p in walk_files(path)
                     if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
            if not files:
                raise HonedError(f"input: folder '{path}' holds no images")
            return pd.DataFrame({"x": files})
        frame, base = read_table(path, "input"), path.parent
    return table_inputs(frame, recipe, base, "input" if isinstance(source, pd.DataFrame) else str(source))


def input_chunks(source: Any, recipe: Recipe, rows: int) -> Iterator[pd.DataFrame]:
    """unlabelled_frame in chunks of about `rows` rows when `source` is a table file (streamed, so a
    200k-row file is never in memory whole); any other source comes in one piece."""
    path = resolve_data_path(str(source), "input") if isinstance(source, str | Path) else None
    if path is None or path.is_dir():
        yield unlabelled_frame(source, recipe)
        return
    for chunk in iter_table(path, "input", rows):
        yield table_inputs(chunk, recipe, path.parent, str(source))


def table_inputs(frame: pd.DataFrame, recipe: Recipe, base: Path, where: str) -> pd.DataFrame:
    """The columns the model reads from a table (text and pair, or image paths resolved against `base`);
    every other column, training-only ones included, is ignored."""
    spec = recipe.data
    column = spec.text_column if spec.kind == "text" else spec.path_column
    require_columns(frame, {f"data.{'text' if spec.kind == 'text' else 'path'}_column": column,
                            "data.text_pair_column": spec.text_pair_column}, where)
    if spec.kind == "image":
        paths = frame[column].astype(str).map(lambda p: str((base / p).resolve()))
        return pd.DataFrame({"x": paths}, index=frame.index)
    out = pd.DataFrame({"x": frame[column].fillna("").astype(str)}, index=frame.index)
    if spec.text_pair_column:
        out["x2"] = frame[spec.text_pair_column].fillna("").astype(str)
    return out


def model_inputs(frame: pd.DataFrame, recipe: Recipe) -> pd.DataFrame:
    """The text normalisation the model was trained with (`data.preprocess`, from the saved recipe)."""
    return normalise_texts(frame, recipe.data.preprocess) if recipe.data.kind == "text" else frame


def labelled_frame(source: Any, recipe: Recipe, labels: tuple[str, ...], with_slices: bool = False,
                   task: str = "classification") -> pd.DataFrame:
    """Labelled rows (column label, or target:NAME columns for regression) read per the recipe; a label
    the predictor does not know is an error; `with_slices` keeps the report's slice columns that the data
    has. Only the columns the model reads and the labels are required: a training-only group or slice
    column may be missing."""
    keep = slice_columns(recipe) if with_slices else ()
    frame = load_source(source, recipe.data, "data", keep=keep, scoring=True, task=task)
    if "label" not in frame:  # regression targets: numbers, checked as they were read
        return frame
    frame = keep_labels(frame, recipe.data.labels, "data")
    if recipe.data.normalise_labels:
        frame["label"] = match_known(frame["label"], labels)
    unseen = sorted(set(frame["label"]) - set(labels))
    if unseen:
        raise HonedError(f"data: label '{unseen[0]}' is not one the model was trained on ({', '.join(labels)})")
    return frame


def values_frame(frame: pd.DataFrame, names: tuple[str, ...], values: np.ndarray) -> pd.DataFrame:
    """`honed predict`'s table for a regression model: the input and a `predicted` column (one target) or
    `predicted_NAME` per target."""
    out = pd.DataFrame({"input": frame["x"].map(lambda v: v if isinstance(v, str) else "<array>")})
    for j, name in enumerate(names):
        out["predicted" if len(names) == 1 else f"predicted_{name}"] = values[:, j]
    return out


def output_frame(frame: pd.DataFrame, labels: tuple[str, ...], probs: np.ndarray) -> pd.DataFrame:
    """`honed predict`'s table: the input, the predicted label and one probability column per class."""
    out = pd.DataFrame({"input": frame["x"].map(lambda v: v if isinstance(v, str) else "<array>")})
    out["predicted"] = [labels[i] for i in probs.argmax(axis=1)]
    for i, name in enumerate(labels):
        out[f"prob_{name}"] = probs[:, i]
    return out
