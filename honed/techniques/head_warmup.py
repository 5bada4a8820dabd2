"""Head warm-up: train only the new head for N epochs (or steps), then unfreeze the rest.

A fresh random head sends large, noisy gradients into the pretrained body; training it alone
first (fastai's `fine_tune` freeze epoch) protects the pretrained features. What was frozen by an
earlier technique in the list (e.g. `freeze`) stays frozen after the warm-up.
"""

from __future__ import annotations

from typing import Any

from honed.errors import HonedError
from honed.proposals import Change, Situation, proposes
from honed.techniques import TECHNIQUES
from honed.train import freezing
from honed.train.events import Technique
from honed.train.schedules import planned_steps


class HeadWarmup(Technique):
    changes_trainable = True

    def __init__(self, epochs: int | None = None, steps: int | None = None, bn_eval: bool = True) -> None:
        if (epochs is None) == (steps is None):
            raise ValueError("give exactly one of epochs or steps")
        if (epochs or steps or 0) < 1:
            raise ValueError("epochs/steps must be >= 1")
        self.epochs, self.steps, self.bn_eval = epochs, steps, bn_eval
        self.done = False
        self.release: list[str] = []  # parameters to unfreeze after the warm-up

    def check(self, recipe: Any, model: Any) -> None:
        if self.epochs is not None and self.epochs >= recipe.train.epochs:
            raise HonedError(
                f"techniques: head_warmup.epochs={self.epochs} leaves no epoch to train the body "
                f"(train.epochs={recipe.train.epochs}); lower it or train longer"
            )

    def on_fit_start(self, state: Any) -> None:
        model = freezing.unwrap(state.accelerator.unwrap_model(state.model))
        if self.done:
            return
        head = set(freezing.groups_of(model)[-1].params)
        if not self.release:
            self.release = sorted(freezing.trainable(model) - head)
        freezing.set_trainable(model, set(self.release), False)

    def on_epoch_start(self, state: Any) -> None:
        if not self.done and self.epochs is not None and state.epoch >= self.epochs:
            self._finish(state)
        if not self.done and self.bn_eval:
            freezing.frozen_modules_to_eval(state.accelerator.unwrap_model(state.model))

    def on_after_optimizer_step(self, state: Any) -> None:
        if not self.done and self.steps is not None and state.step >= self.steps:
            self._finish(state)

    def _finish(self, state: Any) -> None:
        freezing.unfreeze(state, set(self.release))
        self.done = True
        model = state.accelerator.unwrap_model(state.model)
        if model.training:  # mid-epoch: the released batch-norm layers train again, still-frozen ones stay put
            model.train()
            freezing.frozen_modules_to_eval(model)

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done, "release": list(self.release)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.done, self.release = state["done"], list(state["release"])


TECHNIQUES.register("head_warmup")(HeadWarmup)


@proposes("techniques")
def _climb_candidates(s: Situation) -> list[Change]:
    """The head alone for the first tenth of the steps (steps, not epochs: short runs have one or two)."""
    if any(s.has_technique(t) for t in ("head_warmup", "gradual_unfreezing", "freeze")):
        return []
    steps = max(1, round(0.1 * planned_steps(s)))
    return [Change(f"head warmup {steps} steps", techniques=[{"name": "head_warmup", "steps": steps}],
                   group="freezing", cost=0.95,
                   why="the fresh head learns first, so its random early gradients do not disturb the pretrained body")]
