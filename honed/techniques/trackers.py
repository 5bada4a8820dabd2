"""Experiment trackers (TensorBoard, MLflow, Weights & Biases) through accelerate's trackers.

    log: {trackers: [tensorboard, mlflow, wandb]}

A run-time callback built by the fit from `log.trackers`, not a recipe technique: it holds live
tracker objects, so it is never saved with checkpoints. The recipe goes in as the run's parameters
(flattened to dotted keys, as `honed train` overrides spell them), every epoch's metrics.jsonl line
as metrics at that optimizer step. Where each tracker writes is its own setting: TensorBoard under
RUN_DIR/, MLflow to MLFLOW_TRACKING_URI (MLflow 3 defaults to sqlite:///mlflow.db in the working folder;
a file store needs MLFLOW_ALLOW_FILE_STORE=true), W&B to its project (WANDB_MODE=offline keeps it local).
The fit ends the trackers in its `finally` too, so a pruned or failed run leaves no tracker run open.
"""

from __future__ import annotations

from typing import Any

from honed.train.events import Technique


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"optim": {"lr": 1e-4}} -> {"optim.lr": 1e-4}; lists and None become strings (trackers take scalars)."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    value = tree if isinstance(tree, int | float | str | bool) else str(tree)
    return {prefix[:-1]: value}


class Trackers(Technique):
    """Starts the recipe's trackers at fit start, logs each epoch, ends them at fit end."""

    acts_on_head_only = True  # logs only: fine with the frozen-feature cache

    def __init__(self, names: list[str], project: str) -> None:
        self.names, self.project = list(names), project

    def on_fit_start(self, state: Any) -> None:
        config = flatten(state.recipe.model_dump(mode="json"))
        state.accelerator.init_trackers(self.project, config=config)

    def on_epoch_end(self, state: Any) -> None:
        numbers = {
            k: v for k, v in state.epoch_record.items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
        state.accelerator.log(numbers, step=state.step)

    def on_fit_end(self, state: Any) -> None:
        state.accelerator.end_training()
