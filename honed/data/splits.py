"""Seeded train/val/test splits: stratified, group-aware (one group never in two splits) or random."""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import GroupShuffleSplit, train_test_split

from honed.errors import HonedError


def carve(frame: pd.DataFrame, fraction: float, method: str, seed: int, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split `fraction` of `frame` off as `name`; returns (rest, carved)."""
    if fraction <= 0:
        return frame, frame.iloc[:0]
    if method == "group":
        if "group" not in frame:
            raise HonedError("data.split.method=group needs data.group_column (e.g. movie_name)")
        splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        rest_idx, carved_idx = next(splitter.split(frame, groups=frame["group"]))
        return frame.iloc[rest_idx], frame.iloc[carved_idx]
    # regression frames have no classes to stratify by: they split at random
    stratify = frame["label"] if method == "stratified" and "label" in frame else None
    if stratify is not None and stratify.value_counts().min() < 2:
        rare = stratify.value_counts().idxmin()
        raise HonedError(
            f"data.split: class '{rare}' has one row, too few to stratify; add rows or use data.split.method=random"
        )
    try:
        rest, carved = train_test_split(frame, test_size=fraction, random_state=seed, stratify=stratify)
    except ValueError as exc:
        raise HonedError(f"data.split.{name}={fraction}: {exc}") from exc
    return rest, carved


def limit(frame: pd.DataFrame, max_rows: int | None, seed: int) -> pd.DataFrame:
    """A seeded random subset of at most `max_rows` rows, in the original order."""
    if max_rows is None or len(frame) <= max_rows:
        return frame
    return frame.sample(n=max_rows, random_state=seed).sort_index()
