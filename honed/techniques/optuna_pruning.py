"""Optuna pruning: report the validation metric to the running trial after every evaluation and
stop a trial the study's pruner (median, Hyperband, successive halving) judges hopeless.

`honed tune` adds this technique to each trial's recipe with a `key` under which it placed the
live `optuna.Trial` in `ACTIVE` (a trial object is not recipe data). Pruning raises
`optuna.TrialPruned`, which ends the fit at once (no final test pass, no saved model); Optuna
records the trial as pruned. A non-finite metric raises FloatingPointError, so the trial is
recorded as failed with that reason.
"""

from __future__ import annotations

import math
from typing import Any

from honed.techniques import TECHNIQUES

ACTIVE: dict[str, Any] = {}  # key -> optuna.Trial, filled by honed/tune/objective.py for one fit


class OptunaPruning:
    def __init__(self, key: str, metric: str | None = None) -> None:
        if key not in ACTIVE:
            raise ValueError("optuna_pruning is added by `honed tune`; use search.pruner in a recipe instead")
        self.trial, self.metric = ACTIVE[key], metric

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


TECHNIQUES.register("optuna_pruning")(OptunaPruning)
