"""k-fold cross-validation: `cross_validate(recipe, folds=5)` -> mean ± std per metric of the recipe's task and
out-of-fold outputs for every training row.

Classification folds are stratified by label (scikit-learn StratifiedKFold), and group-aware when the recipe
sets `data.group_column` (StratifiedGroupKFold: one group never sits in a fold's train and val at once).
Regression and multi-label folds are plain KFold (GroupKFold with a group column): a float target cannot be
stratified, and no maintained iterative-stratification library is a dependency; a multi-label split in which
a fold's training rows miss a label is refused in one line. Each fold is an ordinary `honed.fit` on in-memory
splits, in RUN_DIR/folds/fold-<i>/ (RUN_DIR: the recipe's output_dir, else runs/<name>-cv). The out-of-fold
outputs (RUN_DIR/oof.csv: class or per-label probabilities, or regression predictions in the targets' units)
feed stacking and label-error finding (`honed audit --oof`); RUN_DIR/fold_rows.csv says which fold held out
each row.

The rows cross-validated are the recipe's training rows; when the val split is carved out of
`data.train` (no data.val file) its rows are folded back in, since every fold holds out its own
val. The test split is never touched.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

from honed.data.build import load_tables
from honed.data.labels import LABELS, TARGET, LabelMap
from honed.data.targets import with_task
from honed.errors import HonedError
from honed.fit import fit, normalise_overrides
from honed.inference.logits import logits_for
from honed.metrics import TASKS
from honed.progress import progress_bar
from honed.recipe import Recipe, load_recipe
from honed.train.interrupt import raise_if_pending, stop_on_signals

Folds = list[tuple[np.ndarray, np.ndarray]]


@dataclass
class CVResult:
    """What `cross_validate` returns (and writes as cv.json + oof.csv)."""

    metrics_mean: dict[str, float]  # the task's metrics (honed.metrics.TASKS), each the mean over the folds
    metrics_std: dict[str, float]
    per_fold: list[dict[str, Any]]
    oof_probs: np.ndarray  # (n_train_rows, outputs) in `frame` order: probabilities, or regression predictions
    labels: list[str]  # classes, labels or target names: the columns of oof_probs
    frame: pd.DataFrame  # the cross-validated rows (standard frame: x, label | labels | target:NAME, [group], ...)
    run_dir: Path
    task: str = "classification"
    fold_of_row: np.ndarray | None = None  # (n_train_rows,): the fold that held each row out


def cross_validate(
    recipe: str | Path | dict | Recipe,
    folds: int = 5,
    *,
    data: dict[str, Any] | None = None,
    quiet: bool = True,
    overwrite: bool = False,
    overrides: dict[str, Any] | None = None,
    **kwargs: Any,
) -> CVResult:
    """Fit `folds` models, each validated on the fold it did not see; see the module docstring. `overrides`
    maps dotted recipe keys to values, as in `fit` (keyword overrides spell the dots as `__`)."""
    if not 2 <= int(folds) <= 100:
        raise HonedError(f"--folds: expected 2 to 100, got {folds}")
    recipe = load_recipe(recipe, {**(overrides or {}), **normalise_overrides(kwargs)})
    run_dir = (
        Path(recipe.output_dir) if recipe.output_dir else Path("runs") / f"{recipe.name}-cv"
    )  # not the train run's folder
    if run_dir.exists() and any(run_dir.iterdir()) and not overwrite:
        raise HonedError(
            f"cv folder '{run_dir}' already exists; pass --overwrite (overwrite=True) to replace it or choose --output"
        )
    frame, labels, task = cv_rows(recipe, data)
    recipe = with_task(recipe, task)  # task: auto decided once on all the rows, not per fold
    splits = fold_indices(frame, folds, recipe.seed, task)  # every check before the folder is touched
    if overwrite and run_dir.is_dir():
        shutil.rmtree(run_dir / "folds", ignore_errors=True)
    oof, fold_of = np.full((len(frame), len(labels)), np.nan), np.full(len(frame), -1)
    per_fold: list[dict[str, Any]] = []
    shown = recipe.train.metric
    with stop_on_signals(), progress_bar(not quiet) as bars:
        bar = bars.add_task("cross-validation folds", total=folds, info="")
        for i, (train_idx, val_idx) in enumerate(splits):
            raise_if_pending()  # a signal during the last fold's evaluation stops before the next fold
            outputs, metrics = _fold(recipe, frame, labels, train_idx, val_idx, run_dir / "folds" / f"fold-{i}")
            oof[val_idx], fold_of[val_idx] = outputs, i
            per_fold.append({"fold": i, "train_rows": len(train_idx), "val_rows": len(val_idx), **metrics})
            bars.update(bar, advance=1, info=f"fold {i}: {shown} {metrics[shown]:.4f}")
    names = TASKS[task].names
    mean = {m: float(np.mean([f[m] for f in per_fold])) for m in names}
    std = {m: float(np.std([f[m] for f in per_fold], ddof=1)) if folds > 1 else 0.0 for m in names}
    result = CVResult(mean, std, per_fold, oof, list(labels.names), frame, run_dir, task, fold_of)
    write_outputs(result, labels)
    return result


def cv_rows(recipe: Recipe, data: dict[str, Any] | None) -> tuple[pd.DataFrame, LabelMap, str]:
    """The rows to cross-validate, their label map (the classes or labels in the recipe's order, else sorted;
    regression: the target names) and the task the recipe resolves to."""
    tables = load_tables(recipe, data)
    frames = [tables.frames["train"]]
    carved_val = recipe.data.val is None and (data or {}).get("val") is None
    if carved_val and len(tables.frames["val"]):
        frames.append(tables.frames["val"])
    frame = pd.concat(frames).sort_index(kind="stable") if len(frames) > 1 else frames[0]
    return frame, tables.labels, tables.task


def fold_indices(frame: pd.DataFrame, folds: int, seed: int, task: str = "classification") -> Folds:
    """Positional (train, val) indices per fold, split as the task's folds are (see the module docstring)."""
    try:
        return FOLD_TASKS[task].split(frame, folds, seed)
    except ValueError as exc:
        raise HonedError(f"--folds {folds}: {exc}") from exc


def _groups(frame: pd.DataFrame, folds: int) -> np.ndarray | None:
    """The group column's values (None without one), checked to hold at least one group per fold."""
    if "group" not in frame:
        return None
    groups = frame["group"].to_numpy()
    if len(set(groups)) < folds:
        raise HonedError(f"--folds {folds}: data.group_column has only {len(set(groups))} groups; use fewer folds")
    return groups


def _stratified_folds(frame: pd.DataFrame, folds: int, seed: int) -> Folds:
    """Classification: stratified by label, group-aware with a group column."""
    y = frame["label"].to_numpy()
    smallest = frame["label"].value_counts()
    if smallest.min() < folds:
        raise HonedError(
            f"--folds {folds}: class '{smallest.idxmin()}' has only {smallest.min()} rows; use at most that many folds"
        )
    groups = _groups(frame, folds)
    if groups is not None:
        return list(StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(frame, y, groups))
    return list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(frame, y))


def _plain_folds(frame: pd.DataFrame, folds: int, seed: int) -> Folds:
    """Numeric targets (nothing to stratify on): shuffled KFold, GroupKFold with a group column."""
    groups = _groups(frame, folds)
    if groups is not None:
        return list(GroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(frame, groups=groups))
    return list(KFold(n_splits=folds, shuffle=True, random_state=seed).split(frame))


def _label_set_folds(frame: pd.DataFrame, folds: int, seed: int) -> Folds:
    """Multi-label: plain folds, refused when a fold's training rows miss a label (its model would have no
    output for it, and its held-out rows could not be scored)."""
    splits = _plain_folds(frame, folds, seed)
    sets = frame[LABELS].to_numpy()
    every = {label for labels in sets for label in labels}
    for i, (train_idx, _) in enumerate(splits):
        missing = sorted(every - {label for labels in sets[train_idx] for label in labels})
        if missing:
            rows = sum(missing[0] in labels for labels in sets)
            raise HonedError(
                f"--folds {folds}: no training row of fold {i} holds label '{missing[0]}' (it is on {rows} of "
                f"{len(frame)} rows); use fewer folds, or leave the label out with data.labels"
            )
    return splits


def _source(frame: pd.DataFrame, kind: str) -> Any:
    """A fold's rows as `honed.fit` in-memory data: a table with standard column names, or (X, y)
    for images held as arrays."""
    if kind == "image" and not all(isinstance(v, str) for v in frame["x"]):
        return (list(frame["x"]), list(frame["label"]))
    return frame.reset_index(drop=True)


def _read_as_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The standard frame with regression targets under their own names (what data.label_column names)."""
    return frame.rename(columns=lambda c: c.removeprefix(TARGET))


def fold_overrides(recipe: Recipe, labels: LabelMap, task: str, fold_dir: Path) -> dict[str, Any]:
    """The recipe changes a fold run needs: read the standard frame, no carved test, no report."""
    how = FOLD_TASKS[task]
    out: dict[str, Any] = {
        "output_dir": str(fold_dir),
        "search": None,
        "task": task,
        "data.train": None,
        "data.val": None,
        "data.test": None,
        "data.labels": list(labels.names) if how.keeps_labels else None,
        "data.split.test": 0.0,
        "data.split.val": 0.0,
        "data.max_rows": {},
        "data.label_column": how.label_column(labels),
        "data.group_column": None,
        "report.slices": [],
        "report.enabled": False,
    }
    out["data.text_column" if recipe.data.kind == "text" else "data.path_column"] = "x"
    if recipe.data.text_pair_column:
        out["data.text_pair_column"] = "x2"
    return out


def _fold(
    recipe: Recipe, frame: pd.DataFrame, labels: LabelMap, train_idx: np.ndarray, val_idx: np.ndarray, fold_dir: Path
) -> tuple[np.ndarray, dict[str, float]]:
    """Fit one fold; its held-out outputs (FoldTask.outputs) and the task's val metrics."""
    kind = recipe.data.kind
    fold_recipe = load_recipe(recipe, fold_overrides(recipe, labels, recipe.task, fold_dir))
    held_out = frame.iloc[val_idx]
    data = {split: _source(_read_as_table(rows), kind) for split, rows in (("train", frame.iloc[train_idx]),
                                                                             ("val", held_out))}
    run = fit(fold_recipe, data=data, overwrite=True, quiet=True)
    logits = logits_for(run.model, run.labels, run.recipe, held_out.reset_index(drop=True))
    outputs = FOLD_TASKS[recipe.task].outputs(run.labels, logits)
    metrics = {m: float(run.metrics[f"val_{m}"]) for m in TASKS[recipe.task].names}
    if not np.isfinite(list(metrics.values())).all():
        raise HonedError(
            f"cross-validation fold {fold_dir.name}: the validation metrics are not finite ({metrics}); lower optim.lr"
        )
    return outputs, metrics


def _probabilities(labels: LabelMap, logits: torch.Tensor) -> np.ndarray:
    """Class probabilities (softmax), or one sigmoid per label for a multi-label map."""
    return labels.probabilities(logits.float()).numpy()


@dataclass(frozen=True)
class FoldTask:
    """What cross-validation does per task (honed.metrics.TASKS keys): how rows are split into folds, what a
    fold's held-out logits become in oof.csv and under which column prefix, which standard-frame columns a
    fold's recipe reads its labels from, and how oof.csv shows each row's true labels."""

    split: Callable[[pd.DataFrame, int, int], Folds]
    outputs: Callable[[Any, torch.Tensor], np.ndarray]
    prefix: str
    label_column: Callable[[Any], str | list[str]]
    truth: Callable[[pd.DataFrame, Any], dict[str, Any]]
    keeps_labels: bool  # data.labels fixes every fold's classes or labels (and their order); targets have none
    noun: str  # what oof.csv holds, for messages


FOLD_TASKS: dict[str, FoldTask] = {
    "classification": FoldTask(
        _stratified_folds, _probabilities, "p_", lambda labels: "label",
        lambda frame, labels: {"label": frame["label"].to_numpy()}, True, "out-of-fold probabilities",
    ),
    "regression": FoldTask(
        _plain_folds, lambda labels, logits: labels.decode(logits.double().numpy()), "pred_",
        lambda labels: labels.names[0] if len(labels.names) == 1 else list(labels.names),
        lambda frame, labels: {n: frame[TARGET + n].to_numpy() for n in labels.names}, False,
        "out-of-fold predictions",
    ),
    "multilabel": FoldTask(
        _label_set_folds, _probabilities, "p_", lambda labels: LABELS,
        lambda frame, labels: {"label": [labels.delimiter.join(s) for s in frame[LABELS]]}, True,
        "out-of-fold per-label probabilities",
    ),
}


def write_outputs(result: CVResult, labels: LabelMap) -> None:
    """RUN_DIR/oof.csv (row, the true label(s), p_<class>... or pred_<target>...), RUN_DIR/fold_rows.csv (row,
    fold) and RUN_DIR/cv.json."""
    how = FOLD_TASKS[result.task]
    result.run_dir.mkdir(parents=True, exist_ok=True)
    rows = result.frame.index.to_numpy()
    oof = pd.DataFrame({"row": rows, **how.truth(result.frame, labels)})
    for i, name in enumerate(result.labels):
        oof[f"{how.prefix}{name}"] = result.oof_probs[:, i]
    oof.to_csv(result.run_dir / "oof.csv", index=False)
    if result.fold_of_row is not None:
        pd.DataFrame({"row": rows, "fold": result.fold_of_row}).to_csv(result.run_dir / "fold_rows.csv", index=False)
    summary = {
        "folds": len(result.per_fold),
        "rows": len(result.frame),
        "task": result.task,
        "labels": result.labels,
        "metrics_mean": result.metrics_mean,
        "metrics_std": result.metrics_std,
        "per_fold": result.per_fold,
    }
    (result.run_dir / "cv.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
