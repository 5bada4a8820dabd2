"""Optuna pruning: report the validation metric to the running trial after every evaluation and
stop a trial the study's pruner (median, Hyperband, successive halving) judges hopeless.

A run-time callback, not recipe data (as optuna-integration's Lightning callback): `honed tune`
passes `fit(recipe, callbacks=[OptunaPruning(trial, metric)])` with the live `optuna.Trial`, so the
saved recipe never mentions it. Pruning raises `optuna.TrialPruned`, which ends the fit at once (no
final test pass, no saved model); Optuna records the trial as pruned. A non-finite metric raises
FloatingPointError, so the trial is recorded as failed with that reason.
"""

from __future__ import annotations

import math
from typing import Any

from honed.train.events import Technique


class OptunaPruning(Technique):
    acts_on_head_only = True  # reads the val metric only: fine with the frozen-feature cache

    def __init__(self, trial: Any, metric: str | None = None) -> None:
        self.trial, self.metric = trial, metric

    def on_evaluate_end(self, state: Any) -> None:
        import optuna

        metric = self.metric or state.recipe.train.metric
        value = float(state.val_metrics[metric])
        self.trial.set_user_attr("epochs", state.epoch)
        if not math.isfinite(value):
            raise FloatingPointError(f"val {metric} is {value} after epoch {state.epoch}")
        self.trial.report(value, step=state.epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {state.epoch}: val {metric} {value:.4f}")
