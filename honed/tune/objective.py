"""One trial: suggest values, fit (or cross-validate) the recipe they make, return the val metric.

Each trial is a normal run folder at RUN_DIR/trials/trial-<number>/. A trial that raises or ends
with a non-finite metric is recorded as failed with its reason (user attribute `fail_reason`) and
the study goes on; pruning raises optuna.TrialPruned from the OptunaPruning run-time callback.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from honed.recipe import load_recipe
from honed.techniques.optuna_pruning import OptunaPruning
from honed.tune.space import apply, suggest
from honed.tune.spec import METRICS, SearchSpec


class TrialFailed(Exception):
    """The trial ran but produced no usable value (e.g. NaN)."""


def trial_dir(run_dir: Path, number: int) -> Path:
    return run_dir / "trials" / f"trial-{number}"


@dataclass
class Objective:
    """Callable for study.optimize; holds the base recipe tree (without `search:`)."""

    tree: dict[str, Any]
    spec: SearchSpec
    run_dir: Path

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            return self._run(trial)
        except optuna.TrialPruned:
            raise
        except BaseException as exc:  # recorded, then Optuna marks the trial failed (catch=Exception) and goes on
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:500])
            raise
        finally:  # model/ holds the weights; checkpoints (optimizer state included) only cost disk now
            folder = trial_dir(self.run_dir, trial.number)
            for checkpoints in [folder / "checkpoints", *folder.glob("folds/fold-*/checkpoints")]:
                shutil.rmtree(checkpoints, ignore_errors=True)

    def _run(self, trial: optuna.Trial) -> float:
        values = suggest(trial, self.spec)
        folder = trial_dir(self.run_dir, trial.number)
        tree = apply(self.tree, self.spec, values)
        tree.update(output_dir=str(folder), search=None)
        tree.setdefault("train", {}).update(metric=self.spec.metric, mode=self.spec.mode)
        trial.set_user_attr("overrides", values)
        trial.set_user_attr("run_dir", str(folder))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        value = self._cross_validate(trial, tree) if self.spec.cv_folds else self._fit(trial, tree)
        if not math.isfinite(value):
            raise TrialFailed(f"val {self.spec.metric} is {value}")
        return value

    def _fit(self, trial: optuna.Trial, tree: dict[str, Any]) -> float:
        from honed.fit import fit

        callbacks = [OptunaPruning(trial, self.spec.metric)] if self.spec.pruner != "none" else []
        run = fit(load_recipe(tree), callbacks=callbacks, overwrite=True, quiet=True)
        trial.set_user_attr("epochs", int(run.metrics["epochs_run"]))
        trial.set_user_attr("model_dir", str(run.model_dir))
        for key in (f"{split}_{name}" for split in ("val", "test") for name in METRICS):
            if key in run.metrics:  # every score of the task in trials.csv, whichever one the study optimises
                trial.set_user_attr(key, float(run.metrics[key]))
        trial.set_user_attr("train_seconds", float(run.metrics["train_seconds"]))
        return float(run.metrics[f"val_{self.spec.metric}"])

    def _cross_validate(self, trial: optuna.Trial, tree: dict[str, Any]) -> float:
        """The CV mean of the metric (no pruning inside cross-validation: folds are not epochs)."""
        from honed.cv import cross_validate

        result = cross_validate(load_recipe(tree), self.spec.cv_folds, overwrite=True)
        epochs = 0
        for fold in result.per_fold:
            epochs += int(_fold_epochs(result.run_dir / "folds" / f"fold-{fold['fold']}"))
        trial.set_user_attr("epochs", epochs)
        trial.set_user_attr("cv_std", float(result.metrics_std[self.spec.metric]))
        return float(result.metrics_mean[self.spec.metric])


def _fold_epochs(folder: Path) -> int:
    import json

    path = folder / "results.json"
    return int(json.loads(path.read_text(encoding="utf-8")).get("epochs_run", 0)) if path.is_file() else 0
