"""Regression targets: numeric label columns read and checked, and `task: auto` decided.

A regression frame carries one `target:NAME` column per target (float64) where a classification frame
carries `label`; its label map is `honed.data.labels.TargetMap` (standardised on the training split).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from honed.data.labels import TARGET, TargetMap
from honed.errors import HonedError
from honed.recipe import Recipe, build_recipe

DETECT_MIN_DISTINCT = 20  # task auto: float labels with at least this many distinct values are regression targets


def numeric_targets(column: pd.Series, name: str, source: str) -> pd.Series:
    """A target column as float64; a missing, non-numeric or infinite value is one line naming the column
    and its (1-based) row."""
    values = pd.to_numeric(column, errors="coerce")
    bad = values.isna() | ~np.isfinite(values.astype(float).fillna(0.0))
    if bad.any():
        pos = int(np.argmax(bad.to_numpy()))
        raise HonedError(
            f"{source}: target column '{name}' row {pos + 1} holds {str(column.iloc[pos])!r}, not a finite number "
            f"({int(bad.sum())} such rows); regression targets must be numbers: fix or drop those rows"
        )
    return values.astype(np.float64)


def target_columns(frame: pd.DataFrame, names: Sequence[str], source: str) -> pd.DataFrame:
    """The standard frame's `target:NAME` columns from a table's named columns."""
    return pd.DataFrame(
        {TARGET + name: numeric_targets(frame[name], name, source) for name in names}, index=frame.index
    )


def looks_like_regression(frame: pd.DataFrame, names: Sequence[str]) -> bool:
    """`task: auto`: several label columns, or one column of floats (not integers) with many distinct values."""
    if len(names) > 1:
        return True
    column = frame[names[0]]
    if not pd.api.types.is_float_dtype(column) or column.isna().all():
        return False
    values = column.dropna()
    return bool((values != values.round()).any()) and values.nunique() >= DETECT_MIN_DISTINCT


def target_map(frames: dict[str, pd.DataFrame], names: Iterable[str]) -> TargetMap:
    """The target map of a regression run, standardised on the training split (checked non-empty)."""
    train = frames["train"]
    if train.empty:
        raise HonedError("data.train: the training split is empty (check data.split and data.max_rows)")
    return TargetMap.fit(train, list(names))


def with_task(recipe: Recipe, task: str) -> Recipe:
    """`task: auto` resolved to `task`, with the task's defaults where the recipe was silent (so the saved
    recipe.yaml names the task it was trained for)."""
    tree = recipe.model_dump(mode="json", exclude_unset=True)
    return recipe if recipe.task == task else build_recipe({**tree, "task": task})
