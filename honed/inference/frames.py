"""Frames in and out of a saved predictor: the saved recipe, unlabelled inputs, the text
normalisation the model was trained with, labelled data checked against the predictor's classes,
and the output table of `honed predict`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from honed.assets import resolve_data_path
from honed.data.build import keep_labels
from honed.data.preprocess import normalise_texts
from honed.data.sources import IMAGE_SUFFIXES, load_source, slice_columns
from honed.data.tables import read_table, require_columns
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
            files = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise HonedError(f"input: folder '{path}' holds no images")
            return pd.DataFrame({"x": files})
        frame, base = read_table(path, "input"), path.parent
    spec = recipe.data
    column = spec.text_column if spec.kind == "text" else spec.path_column
    where = "input" if isinstance(source, pd.DataFrame) else str(source)
    require_columns(frame, {f"data.{'text' if spec.kind == 'text' else 'path'}_column": column,
                            "data.text_pair_column": spec.text_pair_column}, where)
    if spec.kind == "image":
        return pd.DataFrame({"x": frame[column].astype(str).map(lambda p: str((base / p).resolve()))})
    out = pd.DataFrame({"x": frame[column].fillna("").astype(str)})
    if spec.text_pair_column:
        out["x2"] = frame[spec.text_pair_column].fillna("").astype(str)
    return out


def model_inputs(frame: pd.DataFrame, recipe: Recipe) -> pd.DataFrame:
    """The text normalisation the model was trained with (`data.preprocess`, from the saved recipe)."""
    return normalise_texts(frame, recipe.data.preprocess) if recipe.data.kind == "text" else frame


def labelled_frame(source: Any, recipe: Recipe, labels: tuple[str, ...], with_slices: bool = False) -> pd.DataFrame:
    """Labelled rows (column label) read per the recipe; a label the predictor does not know is an
    error; `with_slices` keeps the report's slice columns."""
    keep = slice_columns(recipe) if with_slices else ()
    frame = keep_labels(load_source(source, recipe.data, "data", keep=keep), recipe.data.labels, "data")
    unseen = sorted(set(frame["label"]) - set(labels))
    if unseen:
        raise HonedError(f"data: label '{unseen[0]}' is not one the model was trained on ({', '.join(labels)})")
    return frame


def output_frame(frame: pd.DataFrame, labels: tuple[str, ...], probs: np.ndarray) -> pd.DataFrame:
    """`honed predict`'s table: the input, the predicted label and one probability column per class."""
    out = pd.DataFrame({"input": frame["x"].map(lambda v: v if isinstance(v, str) else "<array>")})
    out["predicted"] = [labels[i] for i in probs.argmax(axis=1)]
    for i, name in enumerate(labels):
        out[f"prob_{name}"] = probs[:, i]
    return out
