"""Metrics by slice: where in the data the model fails.

Slices come from the analysed frame: text length bins (characters, quartile edges), the group
column (`data.group_column`), and any metadata column named in `report.slices`. A numeric column
with many values is binned by quartiles; a categorical one with many values shows its worst
values (lowest accuracy among those with enough rows), since hundreds of rows would hide them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from honed.data.sources import META
from honed.errors import HonedError

MAX_VALUES = 15  # slice values shown per column
MIN_ROWS = 5  # a value with fewer rows is too noisy to rank among the worst


def slice_metrics(
    keys: pd.Series, y_true: np.ndarray, pred: np.ndarray, losses: np.ndarray, k: int
) -> list[dict[str, Any]]:
    """Rows, accuracy, macro-F1 and mean loss for every value of `keys` (aligned with the predictions)."""
    out = []
    codes = keys.to_numpy()
    for value in pd.unique(codes):
        mask = codes == value
        t, p = y_true[mask], pred[mask]
        out.append(
            {
                "value": str(value),
                "rows": int(mask.sum()),
                "accuracy": float((t == p).mean()),
                "macro_f1": float(f1_score(t, p, labels=list(range(k)), average="macro", zero_division=0)),
                "loss": float(losses[mask].mean()),
            }
        )
    return out


def length_bins(texts: pd.Series) -> pd.Series:
    """Text length in characters, cut at its quartiles, labelled like '52-97 chars'."""
    lengths = texts.fillna("").astype(str).str.len()
    edges = sorted(set(np.quantile(lengths, [0.0, 0.25, 0.5, 0.75, 1.0]).round().astype(int).tolist()))
    if len(edges) < 2:
        return pd.Series([f"{edges[0]} chars"] * len(lengths), index=lengths.index)
    bins = pd.cut(lengths, bins=edges, include_lowest=True, duplicates="drop")
    return bins.map(lambda iv: f"{int(np.ceil(iv.left))}-{int(iv.right)} chars").astype(str)


def _numeric_bins(values: pd.Series) -> pd.Series:
    binned = pd.qcut(values, q=4, duplicates="drop")
    return binned.map(lambda iv: f"{iv.left:g} to {iv.right:g}").astype(str).where(values.notna(), "missing")


def column_slices(
    name: str,
    values: pd.Series,
    y_true: np.ndarray,
    pred: np.ndarray,
    losses: np.ndarray,
    k: int,
    natural_order: bool = False,
) -> dict[str, Any]:
    """One slice table: every value when there are few, else the MAX_VALUES worst with >= MIN_ROWS rows."""
    if pd.api.types.is_numeric_dtype(values) and values.nunique() > MAX_VALUES:
        values, natural_order = _numeric_bins(values), True
    values = values.astype(object).where(values.notna(), "missing").astype(str)
    rows = slice_metrics(values, y_true, pred, losses, k)
    total = len(rows)
    if natural_order:
        rows.sort(key=lambda r: _first_number(r["value"]))
        shown = "all values"
    elif total <= MAX_VALUES:
        rows.sort(key=lambda r: (-r["rows"], r["value"]))
        shown = "all values, most rows first"
    else:
        rows = sorted((r for r in rows if r["rows"] >= MIN_ROWS), key=lambda r: (r["accuracy"], -r["rows"]))[
            :MAX_VALUES
        ]
        shown = f"the {len(rows)} lowest-accuracy values with at least {MIN_ROWS} rows"
    return {"column": name, "values": total, "shown": shown, "rows": rows}


def _first_number(text: str) -> float:
    head = text.split(" ")[0].split("-")[0]
    try:
        return float(head)
    except ValueError:
        return float("inf")


def all_slices(
    frame: pd.DataFrame,
    y_true: np.ndarray,
    probs: np.ndarray,
    losses: np.ndarray,
    k: int,
    slices: list[str] | tuple[str, ...] = (),
    group_name: str | None = None,
) -> list[dict[str, Any]]:
    """Slice tables for text length, the group column (shown as `group_name`) and each named metadata column."""
    pred = probs.argmax(axis=1)
    out = []
    if len(frame) and isinstance(frame["x"].iloc[0], str) and not _looks_like_paths(frame["x"]):
        out.append(
            column_slices("text length", length_bins(frame["x"]).reset_index(drop=True), y_true, pred, losses, k, True)
        )
    if "group" in frame:
        out.append(column_slices(group_name or "group", frame["group"].reset_index(drop=True), y_true, pred, losses, k))
    for name in slices:
        if "group" in frame and name == group_name:
            continue  # already sliced as the group column
        column = META + name
        if column not in frame:
            raise HonedError(
                f"report.slices: no column '{name}' in the analysed data; columns kept are: "
                f"{', '.join(c.removeprefix(META) for c in frame.columns if c.startswith(META)) or 'none'}"
            )
        out.append(column_slices(name, frame[column].reset_index(drop=True), y_true, pred, losses, k))
    return out


def _looks_like_paths(values: pd.Series) -> bool:
    """Image datasets hold file paths in x: length bins of a path mean nothing."""
    sample = values.head(20).astype(str)
    return bool(sample.str.contains(r"\.(?:png|jpe?g|bmp|gif|webp|tiff?)$", case=False, regex=True).all())
