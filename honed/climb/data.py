"""The climb's fixed splits and what the proposers may read about the data.

Every run of a climb must see the same train, val and test rows, whatever its seed: in honed the
recipe's `seed` also carves val/test, so the climb splits once with the user's recipe (its seed) and
writes the three splits as files in CLIMB_DIR/data/ (standard columns: x, label, group; images held as
arrays become PNG files). Every configuration reads those files, so seeds only change init and data
order, and `best_recipe.yaml` trains on exactly the rows the climb compared.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from honed.data.build import load_tables
from honed.data.labels import TARGET
from honed.data.sources import META
from honed.errors import HonedError
from honed.proposals import Situation
from honed.recipe import Recipe

SPLITS = ("train", "val", "test")


def load_splits(recipe: Recipe) -> tuple[dict[str, pd.DataFrame], str, list[str]]:
    """The recipe's splits as standard frames, its task and (classification) label names: read and checked
    before anything is written."""
    if isinstance(recipe.data.label_column, list) and len(recipe.data.label_column) > 1:
        raise HonedError("climb: data.label_column lists several targets; the climb compares one target, "
                         "choose one column")
    tables = load_tables(recipe)
    frames = {s: tables.frames[s].reset_index(drop=True) for s in SPLITS}
    names = list(tables.labels.names) if tables.task == "classification" else []
    return frames, tables.task, names


def write_splits(recipe: Recipe, frames: dict[str, pd.DataFrame], task: str, labels: list[str],
                 folder: Path) -> dict[str, Any]:
    """Write the splits under `folder` (kept when already there: a resumed climb reads the same rows); the
    overrides that read them. Regression targets and the report's slice columns keep their names."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, frame in frames.items():
        path = folder / f"{split}.csv"
        if len(frame) and not path.is_file():
            _table(frame, folder / split).to_csv(path.with_suffix(".tmp"), index=False)
            path.with_suffix(".tmp").replace(path)
    targets = [c.removeprefix(TARGET) for c in frames["train"] if c.startswith(TARGET)]
    column = "data.text_column" if recipe.data.kind == "text" else "data.path_column"
    overrides: dict[str, Any] = {
        **{f"data.{s}": (str((folder / f"{s}.csv").resolve()) if len(frames[s]) else None) for s in SPLITS},
        column: "x", "data.label_column": (targets[0] if len(targets) == 1 else targets) if targets else "label",
        "data.split": {"val": 0.0, "test": 0.0}, "data.max_rows": {},
        "data.group_column": "group" if "group" in frames["train"] else None,
    }
    if recipe.data.text_pair_column:
        overrides["data.text_pair_column"] = "x2"
    if task == "classification":
        overrides["data.labels"] = labels
    return overrides


def _table(frame: pd.DataFrame, images: Path) -> pd.DataFrame:
    """The standard columns under names a recipe can read (targets and slice columns without their prefix);
    image arrays written as PNGs (their paths in x, relative to the CSV)."""
    keep = [c for c in frame if c in ("x", "x2", "label", "group") or c.startswith((TARGET, META))]
    out = frame[keep].rename(columns=lambda c: c.removeprefix(TARGET).removeprefix(META)).copy()
    if len(out) and isinstance(out["x"].iloc[0], np.ndarray):
        from PIL import Image

        images.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, pixels in enumerate(out["x"]):
            path = images / f"{i}.png"
            Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path)
            paths.append(str(path.relative_to(images.parent)))  # read relative to the CSV's folder
        out["x"] = paths
    return out


def situation(recipe: Recipe, frames: dict[str, pd.DataFrame], task: str, backbones: list[Any],
              lr_found: float | None = None, findings: dict[str, int] | None = None) -> Situation:
    """What the proposers read about the current recipe and the data."""
    train = frames["train"]
    batch = recipe.train.batch_size * recipe.train.grad_accum_steps
    steps = recipe.train.max_steps or math.ceil(len(train) / batch) * recipe.train.epochs
    skew = 1.0
    if task == "classification" and len(train):
        counts = train["label"].astype(str).value_counts()
        skew = float(counts.max() / max(1, counts.min()))
    return Situation(recipe=recipe, kind=recipe.data.kind, task=task, train_rows=len(train), lr_found=lr_found,
                     long_share=long_share(recipe, train), findings=dict(findings or {}), backbones=list(backbones),
                     steps=int(steps), class_skew=skew)


def long_share(recipe: Recipe, train: pd.DataFrame) -> float:
    """Share of training texts whose token count exceeds data.max_length (text, Hugging Face tokenizers)."""
    if recipe.data.kind != "text" or not len(train):
        return 0.0
    try:
        from transformers import AutoTokenizer

        from honed.assets import resolve_model_id

        name = recipe.model.tokenizer or recipe.model.name
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_id(name), local_files_only=True)
    except Exception:  # a python-kind model without a tokenizer, a fusion: the length check is skipped
        return 0.0
    lengths = [len(ids) for ids in tokenizer(train["x"].astype(str).tolist(), truncation=False)["input_ids"]]
    return float(np.mean(np.asarray(lengths) > recipe.data.max_length))
