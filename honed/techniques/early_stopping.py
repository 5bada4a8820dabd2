"""Early stopping: end training when the validation metric stops improving.

The loop always finishes with the best weights seen, so stopping early restores them. The direction
follows the metric when `mode` is unset: the recipe's `train.mode` for its own metric, else the metric's
fixed direction (honed.metrics.DIRECTION: rmse/mae lower, r2/pearson/spearman higher is better).
"""

from __future__ import annotations

from typing import Any

from honed.metrics import DIRECTION, TASKS
from honed.techniques import TECHNIQUES
from honed.train.events import StopTraining, Technique


class EarlyStopping(Technique):
    acts_on_head_only = True

    def __init__(
        self, patience: int = 2, min_delta: float = 0.0, metric: str | None = None, mode: str | None = None
    ) -> None:
        if patience < 1:
            raise TypeError("patience must be >= 1")
        if metric is not None and all(metric not in task.names for task in TASKS.values()):
            raise TypeError(
                f"metric must be accuracy, macro_f1 or loss (classification) or rmse, mae, r2, pearson, "
                f"spearman (regression) or micro_f1, map (multilabel) (got '{metric}')"
            )
        if mode not in (None, "max", "min"):
            raise TypeError(f"mode must be max or min (got '{mode}')")
        if min_delta < 0:
            raise TypeError("min_delta must be >= 0")
        self.patience, self.min_delta, self.metric, self.mode = patience, min_delta, metric, mode
        self.best: float | None = None
        self.bad_epochs = 0

    def on_evaluate_end(self, state: Any) -> None:
        spec = state.recipe.train
        metric = self.metric or spec.metric
        mode = self.mode or (spec.mode if metric == spec.metric else DIRECTION.get(metric, spec.mode))
        value = state.val_metrics[metric]
        sign = 1.0 if mode == "max" else -1.0
        if self.best is None or sign * (value - self.best) > self.min_delta:
            self.best, self.bad_epochs = value, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            raise StopTraining(f"early stopping: val {metric} did not improve for {self.patience} evaluations")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]


TECHNIQUES.register("early_stopping")(EarlyStopping)
