"""How one run of the climb is scored: a configuration on one seed (or one fold) -> val and test scores.

`RUNNERS` maps a runner name (a `Change.runner`) to a function `run(job) -> result`; `fit` fine-tunes
the recipe with honed.fit, `classical` trains the TF-IDF + logistic-regression pipeline of the
ensemble's sklearn member kind on the same rows, `ensemble` combines other runs' models with honed ensemble,
`crossfit` by selection or stacking fitted on val (honed/climb/crossfit.py). A result is plain data stored in
the climb's study: {"val": {metric: value}, "test": {...}, "seconds": s, "model_dir": folder}.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from honed.climb.crossfit import crossfit
from honed.data.build import load_tables
from honed.data.labels import TARGET
from honed.recipe import Recipe, load_recipe


@dataclass
class Job:
    """One run: `tree` is the configuration's resolved recipe; `pair` the seed or fold index (pairs from
    `folds` on are the verification pairs: folds of another shuffle, `fold_seed`)."""

    config: str
    tree: dict[str, Any]
    runner: str
    pair: int
    seed: int
    folder: str
    pairing: str = "seeds"
    folds: int = 5
    fold_seed: int = 42
    rebuild: int = 0  # > 0: the run again, for its model folder only (gone from disk: a fresh checkout)

    @property
    def key(self) -> str:
        return f"{self.config}/{self.pair}" + (f"/rebuild-{self.rebuild}" if self.rebuild else "")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_recipe(job: Job) -> Recipe:
    """The recipe of this run: its seed, its folder, no report (the best model gets one at the end)."""
    tree = {**job.tree, "output_dir": job.folder, "climb": None, "search": None, "ensemble": None}
    tree["seed"] = job.seed
    tree["report"] = {**(tree.get("report") or {}), "enabled": False}
    return load_recipe(tree)


def job_data(recipe: Recipe, job: Job) -> dict[str, Any] | None:
    """Fold pairing: the fold's train and val rows out of train + val (test stays the test file)."""
    if job.pairing != "folds":
        return None
    from honed.cv import _source, fold_indices

    tables = load_tables(recipe)
    pool = pd.concat([tables.frames["train"], tables.frames["val"]]).reset_index(drop=True)
    if tables.task == "classification":
        folds = fold_indices(pool, job.folds, job.fold_seed)
    else:  # numeric targets: plain (group) k-fold, and the target columns under the names the recipe reads
        folds = _numeric_folds(pool, job.folds, job.fold_seed)
        pool = pool.rename(columns=lambda c: c.removeprefix(TARGET))
    train_idx, val_idx = folds[job.pair % job.folds]
    kind = recipe.data.kind
    return {"train": _source(pool.iloc[train_idx], kind), "val": _source(pool.iloc[val_idx], kind)}


def _numeric_folds(pool: pd.DataFrame, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import GroupKFold, KFold

    if "group" in pool:
        return list(GroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(pool, groups=pool["group"]))
    return list(KFold(n_splits=folds, shuffle=True, random_state=seed).split(pool))


def fit_runner(job: Job) -> dict[str, Any]:
    from honed.fit import fit

    started = time.perf_counter()
    recipe = run_recipe(job)
    run = fit(recipe, job_data(recipe, job), overwrite=True, quiet=True)
    shutil.rmtree(Path(job.folder) / "checkpoints", ignore_errors=True)  # the model folder is what stays
    return {**_split_scores(run.metrics), "seconds": time.perf_counter() - started, "model_dir": str(run.model_dir)}


def classical_runner(job: Job) -> dict[str, Any]:
    from honed.ensemble.classical import fit_sklearn_member
    from honed.ensemble.spec import MemberSpec
    from honed.inference.base import load_predictor
    from honed.metrics import probability_metrics

    started = time.perf_counter()
    recipe = run_recipe(job)
    data = job_data(recipe, job)
    tables = load_tables(recipe, data)
    member = MemberSpec(name="tfidf", kind="sklearn", pipeline="tfidf_logreg")
    labels = tuple(tables.labels.names)
    folder = fit_sklearn_member(member, tables.frames["train"], labels, recipe, Path(job.folder), overwrite=True)
    predictor = load_predictor(folder)
    scores: dict[str, Any] = {}
    for split in ("val", "test"):
        frame = tables.frames[split].reset_index(drop=True)
        if len(frame):
            y = np.asarray([list(predictor.labels).index(v) for v in frame["label"].astype(str)])
            scores[split] = probability_metrics(predictor.predict_proba(frame), y)
    return {"val": scores.get("val", {}), "test": scores.get("test", {}),
            "seconds": time.perf_counter() - started, "model_dir": str(folder)}


def ensemble_runner(job: Job) -> dict[str, Any]:
    """The job's tree holds an `ensemble:` section over this pair's trained members (prefit folders)."""
    from honed.ensemble.build import build_ensemble

    started = time.perf_counter()
    tree = {**job.tree, "output_dir": job.folder, "climb": None, "search": None, "seed": job.seed}
    result = build_ensemble(tree, overwrite=True, quiet=True)
    scores = _split_scores(result.metrics["ensemble"])
    return {**scores, "seconds": time.perf_counter() - started, "model_dir": str(result.folder)}


def _split_scores(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {"val": {}, "test": {}}
    for key, value in metrics.items():
        split, _, name = key.partition("_")
        if split in out and isinstance(value, int | float) and not isinstance(value, bool):
            out[split][name] = float(value)
    return out


def crossfit_runner(job: Job) -> dict[str, Any]:
    """Selection or stacking over this pair's members, its val score cross-fitted (honed/climb/crossfit.py)."""
    started = time.perf_counter()
    tables = load_tables(run_recipe(job))
    scores = crossfit(job.tree["ensemble"], tables.frames, Path(job.folder), job.seed)
    return {**scores, "seconds": time.perf_counter() - started, "model_dir": job.folder}


RUNNERS: dict[str, Callable[[Job], dict[str, Any]]] = {
    "fit": fit_runner, "classical": classical_runner, "ensemble": ensemble_runner, "crossfit": crossfit_runner}
COMBINING = frozenset({"ensemble", "crossfit"})  # runners whose result is an ensemble folder over other runs' models
