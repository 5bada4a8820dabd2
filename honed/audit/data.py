"""Lenient loading for the audit: every row of every split, bad ones marked instead of fatal.

Training refuses an empty label or a corrupt image with one error; an audit must see all of them
at once. `load_audit_data` reads the recipe's sources like training does (same files, columns,
`data.labels` filter and split), but keeps rows with a missing label or text and marks them in a
`problem` column, so the checks can list every bad row and `honed clean` can drop them.

A regression recipe (`task: regression`, or `auto` deciding so from the training table as training
does) reads its target column(s) into `target:NAME` float columns instead: an empty cell is kept and
marked "missing target", a cell that is not a number is one line (as in training); `label` then only
shows the targets ("1.84", or "a=1, b=2") for the row tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from honed.assets import resolve_data_path
from honed.audit.tasks import TASKS
from honed.data.labels import TARGET
from honed.data.sources import _idx_images, _image_folder, label_columns
from honed.data.splits import carve
from honed.data.tables import label_text, read_table, require_columns, unify_variants
from honed.data.targets import looks_like_regression, numeric_targets
from honed.errors import HonedError, require_task
from honed.recipe import Recipe

SPLITS = ("train", "val", "test")


@dataclass
class Source:
    """Where a split's rows came from: a table file, an image folder, IDX arrays or memory."""

    split: str
    path: Path | None
    kind: str  # "table" | "folder" | "idx" | "memory"
    table: pd.DataFrame | None = None  # the raw table as read (for writing a cleaned copy)


@dataclass
class AuditData:
    """All rows with `split`, `source` (the split whose source file holds it), `row` (0-based row in
    that source), `x`, optional `x2`/`group`, `label` (None when missing) and `problem` (None if fine);
    regression rows also carry `target:NAME` per target (NaN when missing) and `labels` is empty."""

    frame: pd.DataFrame
    labels: list[str]
    kind: str
    sources: dict[str, Source]
    notes: list[str] = field(default_factory=list)
    task: str = "classification"  # or "regression"
    targets: list[str] = field(default_factory=list)  # regression: the target column names

    def target_values(self, frame: pd.DataFrame) -> np.ndarray:
        """(rows, targets) float64 targets of `frame`'s rows (regression only; NaN where missing)."""
        return frame[[TARGET + name for name in self.targets]].to_numpy(dtype=np.float64)

    def usable(self) -> pd.DataFrame:
        """Rows every model-based check can use: a label and readable input."""
        return self.frame[self.frame["problem"].isna()]


def load_audit_data(recipe: Recipe, inputs: dict[str, Any] | None = None) -> AuditData:
    """Read every split of `recipe` (or in-memory `inputs`), carve missing val/test like training does."""
    spec, inputs = recipe.data, inputs or {}
    if recipe.task != "auto":  # the Python API's twin of the CLI's task check
        require_task("audit", recipe.task, TASKS)
    frames, sources, notes, task = {}, {}, [], recipe.task
    for split in SPLITS:  # train first: with task auto, its table decides the task for the others
        given = inputs.get(split, getattr(spec, split))
        if given is None:
            continue
        frame, source, task = _read_split(given, recipe, split, task)
        if spec.labels is not None and task != "regression":
            keep = frame["label"].isna() | frame["label"].isin(spec.labels)
            if (~keep).any():
                notes.append(f"{split}: {int((~keep).sum())} rows with labels outside data.labels were left out")
            frame = frame[keep]
        frames[split], sources[split] = frame, source
    if "train" not in frames:
        raise HonedError("data.train: no training data given; set data.train to a file, folder or asset")
    if frames["train"].empty:
        raise HonedError("data.train: no rows to audit (check the file and data.labels)")
    targets = label_columns(spec) if task == "regression" else []
    labels = _targets_present(frames, targets) if targets else _labels(frames, spec.labels, spec.label_column)
    _carve_missing(frames, recipe, bool(targets))
    frame = pd.concat([frames[s] for s in SPLITS if s in frames], ignore_index=True)
    if frame["problem"].notna().all():
        raise HonedError(
            f"data.train: all {len(frame)} rows are unusable (first: row {frame['row'].iloc[0]}: "
            f"{frame['problem'].iloc[0]}); check data.text_column/data.path_column and the files"
        )
    return AuditData(frame, labels, spec.kind, sources, notes, "regression" if targets else "classification", targets)


def _labels(frames: dict[str, pd.DataFrame], order: list[str] | None, column: str) -> list[str]:
    """Class names in label order; fewer than two is an error (nothing to audit or train)."""
    seen = set().union(*(set(f.loc[f["label"].notna(), "label"]) for f in frames.values()))
    labels = [name for name in order if name in seen] if order else sorted(seen)
    if not labels:
        raise HonedError(f"data.label_column: every row's label ('{column}') is missing; nothing can be audited")
    if len(labels) < 2:
        raise HonedError(
            f"data.train: only one class ('{labels[0]}') in the data; an audit (and a classifier) needs two or more"
        )
    return labels


def _targets_present(frames: dict[str, pd.DataFrame], names: list[str]) -> list[str]:
    """Regression has no classes (the empty label list); a target missing from every row is an error."""
    if all(f["label"].isna().all() for f in frames.values()):
        raise HonedError(
            f"data.label_column: every row's target ({', '.join(names)}) is missing; nothing can be audited"
        )
    return []


def data_task(recipe: Recipe, inputs: dict[str, Any] | None = None) -> str:
    """The recipe's task; `auto` decided from the training table the way the audit and training decide it
    (reading that one table, no model), so a caller can refuse what cannot apply before the audit's work."""
    given = (inputs or {}).get("train", recipe.data.train)
    if recipe.task != "auto" or given is None:
        return recipe.task
    return _read_split(given, recipe, "train", "auto")[2]


def _read_split(given: Any, recipe: Recipe, split: str, task: str) -> tuple[pd.DataFrame, Source, str]:
    """The split's standard frame, where it came from, and the task (`auto` decided by the first table read)."""
    field_name, spec = f"data.{split}", recipe.data
    if isinstance(given, pd.DataFrame):
        frame, task = _from_table(given.reset_index(drop=True), recipe, split, Path("."), task)
        return frame, Source(split, None, "memory", given), task
    if not isinstance(given, str | Path):
        raise HonedError(f"{field_name}: the audit reads a path, an asset or a DataFrame, got {type(given).__name__}")
    path = resolve_data_path(str(given), field_name)
    folder = path.name.endswith("-idx3-ubyte.gz") or (spec.kind == "image" and path.is_dir())
    if folder and task == "regression":
        raise HonedError(f"{field_name}: '{path}' holds classes (image folders or IDX arrays); regression targets "
                         "come from a table: data.path_column plus numeric data.label_column")
    if path.name.endswith("-idx3-ubyte.gz"):
        frame = _idx_images(path, field_name)
        return _standardise(frame, split), Source(split, path, "idx"), "classification"
    if spec.kind == "image" and path.is_dir():
        frame = _image_folder(path, field_name)
        return _standardise(frame, split), Source(split, path, "folder"), "classification"
    table = read_table(path, field_name)
    frame, task = _from_table(table, recipe, split, path.parent, task)
    return frame, Source(split, path, "table", table), task


def _from_table(
    table: pd.DataFrame, recipe: Recipe, split: str, base: Path, task: str = "classification"
) -> tuple[pd.DataFrame, str]:
    """A table's standard frame and its task (`auto`: decided from the label values, as training does)."""
    spec, where = recipe.data, f"data.{split}"
    if table.empty:
        raise HonedError(f"{where}: the table holds no rows")
    names = label_columns(spec)
    for name in names:
        require_columns(table, {"data.label_column": name}, where)
    if task == "auto":
        task = "regression" if looks_like_regression(table, names) else "classification"
    if spec.kind == "image":
        require_columns(
            table,
            {"data.path_column": spec.path_column, "data.group_column": spec.group_column},
            where,
        )
        x = table[spec.path_column].map(
            lambda p: str((base / str(p)).resolve()) if isinstance(p, str) and p.strip() else None
        )
    else:
        require_columns(
            table,
            {
                "data.text_column": spec.text_column,
                "data.text_pair_column": spec.text_pair_column,
                "data.group_column": spec.group_column,
            },
            where,
        )
        x = table[spec.text_column].map(lambda t: None if _missing(t) else str(t))
    if task == "regression":
        out = pd.concat([pd.DataFrame({"x": x}), _targets(table, names, where)], axis=1)
    else:
        out = pd.DataFrame(
            {
                "x": x,
                "label": table[names[0]].map(_label),
                "label_raw": table[names[0]].map(lambda v: None if _missing(v) else label_text(v)),
            }
        )
    merge = task != "regression" and spec.normalise_labels
    if merge and out["label"].notna().any():  # as training merges them (the check reads label_raw)
        known = out["label"].notna()
        out.loc[known, "label"] = unify_variants(out.loc[known, "label"], where, True)
    if spec.text_pair_column:
        out["x2"] = table[spec.text_pair_column].map(lambda t: "" if _missing(t) else str(t))
    if spec.group_column:
        out["group"] = table[spec.group_column].map(lambda g: None if _missing(g) else str(g))
    return _standardise(out, split, "missing target" if task == "regression" else "missing label"), task


def _targets(table: pd.DataFrame, names: list[str], where: str) -> pd.DataFrame:
    """`target:NAME` float columns (NaN where the cell is empty, so the row is listed rather than fatal) and
    a `label` column showing them; a cell that is not a finite number is training's one-line error."""
    out = {}
    for name in names:
        column = table[name]
        empty = column.map(lambda v: _missing(v) or str(v).strip() == "")
        out[TARGET + name] = numeric_targets(column.where(~empty, 0.0), name, where).where(~empty)
    frame = pd.DataFrame(out, index=table.index)
    frame["label"] = [show_targets(values, names) for values in frame.to_numpy(dtype=np.float64)]
    return frame


def show_targets(values: np.ndarray, names: list[str]) -> str | None:
    """A row's targets as the row tables show them: '1.84', or 'a=1.84, b=2' (None when one is missing)."""
    if np.isnan(values).any():
        return None
    if len(names) == 1:
        return f"{values[0]:.4g}"
    return ", ".join(f"{name}={value:.4g}" for name, value in zip(names, values))


def _standardise(frame: pd.DataFrame, split: str, missing: str = "missing label") -> pd.DataFrame:
    frame = frame.copy()
    frame.insert(0, "row", np.arange(len(frame)))
    frame.insert(0, "source", split)
    frame.insert(0, "split", split)
    frame["label"] = frame["label"].map(_label)
    frame["problem"] = frame["label"].map(lambda v: missing if _missing(v) else None)
    return frame


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and bool(np.isnan(value)))


def _label(value: Any) -> str | None:
    """A label as training reads it (str, integral floats without '.0'); None when empty or NaN."""
    if _missing(value) or str(value).strip() == "":
        return None
    return label_text(value).strip()


def _carve_missing(frames: dict[str, pd.DataFrame], recipe: Recipe, regression: bool = False) -> None:
    """Val/test not given as files are carved from train with the recipe's split; rows without a label
    stay in train (they cannot be stratified and are dropped by cleaning anyway)."""
    spec, taken = recipe.data.split, 0.0
    for split in ("test", "val"):
        if split in frames:
            continue
        fraction = getattr(spec, split)
        if fraction <= 0:
            continue
        train = frames["train"]
        good = train[train["label"].notna()]
        if "group" in good:
            good = good.assign(group=good["group"].fillna(""))
        if regression:  # no classes to stratify by: a random split, as training does
            good = good.drop(columns="label")
        _, carved = carve(good, fraction / (1.0 - taken), spec.method, recipe.seed, split)
        taken += fraction
        frames[split] = train.loc[carved.index].assign(split=split)
        frames["train"] = train.drop(index=carved.index)
