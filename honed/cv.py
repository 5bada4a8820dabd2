"""k-fold cross-validation: `cross_validate(recipe, folds=5)` -> mean ± std per metric and
out-of-fold probabilities for every training row.

Folds are stratified by label (scikit-learn StratifiedKFold), and group-aware when the recipe sets
`data.group_column` (StratifiedGroupKFold: one group never sits in a fold's train and val at once).
Each fold is an ordinary `honed.fit` on in-memory splits, in RUN_DIR/folds/fold-<i>/ (RUN_DIR: the
recipe's output_dir, else runs/<name>-cv). The
out-of-fold probabilities (RUN_DIR/oof.csv) feed stacking and label-error finding (`honed audit --oof`).

The rows cross-validated are the recipe's training rows; when the val split is carved out of
`data.train` (no data.val file) its rows are folded back in, since every fold holds out its own
val. The test split is never touched.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from honed.data.build import load_tables
from honed.errors import HonedError
from honed.fit import fit, normalise_overrides
from honed.inference.logits import logits_for
from honed.progress import progress_bar
from honed.recipe import Recipe, load_recipe
from honed.train.interrupt import raise_if_pending, stop_on_signals

METRICS = ("accuracy", "macro_f1", "loss")


@dataclass
class CVResult:
    """What `cross_validate` returns (and writes as cv.json + oof.csv)."""

    metrics_mean: dict[str, float]
    metrics_std: dict[str, float]
    per_fold: list[dict[str, Any]]
    oof_probs: np.ndarray  # (n_train_rows, n_classes), rows in `frame` order
    labels: list[str]
    frame: pd.DataFrame  # the cross-validated rows (standard frame: x, label, [group], ...)
    run_dir: Path


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
    if overwrite and run_dir.is_dir():
        shutil.rmtree(run_dir / "folds", ignore_errors=True)
    frame, labels = cv_rows(recipe, data)
    splits = fold_indices(frame, folds, recipe.seed)
    oof = np.full((len(frame), len(labels)), np.nan)
    per_fold: list[dict[str, Any]] = []
    with stop_on_signals(), progress_bar(not quiet) as bars:
        bar = bars.add_task("cross-validation folds", total=folds, info="")
        for i, (train_idx, val_idx) in enumerate(splits):
            raise_if_pending()  # a signal during the last fold's evaluation stops before the next fold
            probs, metrics = _fold(recipe, frame, labels, train_idx, val_idx, run_dir / "folds" / f"fold-{i}")
            oof[val_idx] = probs
            per_fold.append({"fold": i, "train_rows": len(train_idx), "val_rows": len(val_idx), **metrics})
            bars.update(bar, advance=1, info=f"fold {i}: accuracy {metrics['accuracy']:.4f}")
    mean = {m: float(np.mean([f[m] for f in per_fold])) for m in METRICS}
    std = {m: float(np.std([f[m] for f in per_fold], ddof=1)) if folds > 1 else 0.0 for m in METRICS}
    result = CVResult(mean, std, per_fold, oof, list(labels), frame, run_dir)
    write_outputs(result)
    return result


def cv_rows(recipe: Recipe, data: dict[str, Any] | None) -> tuple[pd.DataFrame, list[str]]:
    """The rows to cross-validate and the label order (the recipe's, else sorted)."""
    tables = load_tables(recipe, data)
    frames = [tables.frames["train"]]
    carved_val = recipe.data.val is None and (data or {}).get("val") is None
    if carved_val and len(tables.frames["val"]):
        frames.append(tables.frames["val"])
    frame = pd.concat(frames).sort_index(kind="stable") if len(frames) > 1 else frames[0]
    return frame, list(tables.labels.names)


def fold_indices(frame: pd.DataFrame, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Positional (train, val) indices per fold: stratified, and group-aware with a group column."""
    y = frame["label"].to_numpy()
    smallest = frame["label"].value_counts()
    if smallest.min() < folds:
        raise HonedError(
            f"--folds {folds}: class '{smallest.idxmin()}' has only {smallest.min()} rows; use at most that many folds"
        )
    try:
        if "group" in frame:
            groups = frame["group"].to_numpy()
            if len(set(groups)) < folds:
                raise HonedError(
                    f"--folds {folds}: data.group_column has only {len(set(groups))} groups; use fewer folds"
                )
            return list(StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(frame, y, groups))
        return list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(frame, y))
    except ValueError as exc:
        raise HonedError(f"--folds {folds}: {exc}") from exc


def _source(frame: pd.DataFrame, kind: str) -> Any:
    """A fold's rows as `honed.fit` in-memory data: a table with standard column names, or (X, y)
    for images held as arrays."""
    if kind == "image" and not all(isinstance(v, str) for v in frame["x"]):
        return (list(frame["x"]), list(frame["label"]))
    return frame.reset_index(drop=True)


def fold_overrides(recipe: Recipe, labels: list[str], fold_dir: Path) -> dict[str, Any]:
    """The recipe changes a fold run needs: read the standard frame, no carved test, no report."""
    out: dict[str, Any] = {
        "output_dir": str(fold_dir),
        "search": None,
        "data.train": None,
        "data.val": None,
        "data.test": None,
        "data.labels": labels,
        "data.split.test": 0.0,
        "data.split.val": 0.0,
        "data.max_rows": {},
        "data.label_column": "label",
        "data.group_column": None,
        "report.slices": [],
        "report.enabled": False,
    }
    out["data.text_column" if recipe.data.kind == "text" else "data.path_column"] = "x"
    if recipe.data.text_pair_column:
        out["data.text_pair_column"] = "x2"
    return out


def _fold(
    recipe: Recipe, frame: pd.DataFrame, labels: list[str], train_idx: np.ndarray, val_idx: np.ndarray, fold_dir: Path
) -> tuple[np.ndarray, dict[str, float]]:
    """Fit one fold; its held-out probabilities and metrics."""
    kind = recipe.data.kind
    fold_recipe = load_recipe(recipe, fold_overrides(recipe, labels, fold_dir))
    held_out = frame.iloc[val_idx]
    run = fit(
        fold_recipe,
        data={"train": _source(frame.iloc[train_idx], kind), "val": _source(held_out, kind)},
        overwrite=True,
        quiet=True,
    )
    logits = logits_for(run.model, run.labels, run.recipe, held_out.reset_index(drop=True))
    probs = torch.softmax(logits.float(), dim=-1).numpy()
    metrics = {m: float(run.metrics[f"val_{m}"]) for m in METRICS}
    if not np.isfinite(list(metrics.values())).all():
        raise HonedError(
            f"cross-validation fold {fold_dir.name}: the validation metrics are not finite ({metrics}); lower optim.lr"
        )
    return probs, metrics


def write_outputs(result: CVResult) -> None:
    """RUN_DIR/oof.csv (row, label, p_<class>...) and RUN_DIR/cv.json."""
    result.run_dir.mkdir(parents=True, exist_ok=True)
    oof = pd.DataFrame({"row": result.frame.index.to_numpy(), "label": result.frame["label"].to_numpy()})
    for i, name in enumerate(result.labels):
        oof[f"p_{name}"] = result.oof_probs[:, i]
    oof.to_csv(result.run_dir / "oof.csv", index=False)
    summary = {
        "folds": len(result.per_fold),
        "rows": len(result.frame),
        "labels": result.labels,
        "metrics_mean": result.metrics_mean,
        "metrics_std": result.metrics_std,
        "per_fold": result.per_fold,
    }
    (result.run_dir / "cv.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
