"""Gradual unfreezing (ULMFiT): start with the top layer groups trainable and unfreeze one more
stage, top-down, every `every` epochs. New parameters join the live optimizer with their group's
LR (layer-wise decay applies), and the optimizer state of the parameters already training is kept.

The layer groups (embeddings, block.0 .. block.N-1, neck, head) are cut into `stages` contiguous
chunks from the top; by default every group is its own stage.
"""

from __future__ import annotations

from typing import Any

from honed.errors import HonedError
from honed.models.base import depth_levels
from honed.proposals import Change, Situation, proposes
from honed.techniques import TECHNIQUES
from honed.train import freezing
from honed.train.events import Technique


class GradualUnfreezing(Technique):
    changes_trainable = True

    def __init__(self, every: int = 1, stages: int | None = None, bn_eval: bool = True) -> None:
        if every < 1:
            raise ValueError("every must be >= 1 (epochs between unfreezing stages)")
        if stages is not None and stages < 2:
            raise ValueError("stages must be >= 2 (one stage is a plain fine-tune)")
        self.every, self.stages, self.bn_eval = every, stages, bn_eval
        self.stage = 0

    def chunks(self, model: Any) -> list[set[str]]:
        """Parameter names per stage, top (head) first."""
        levels = depth_levels(freezing.groups_of(model))  # fusion members' blocks of one height unfreeze together
        count = self.stages or len(levels)
        if count > len(levels):
            raise HonedError(
                f"techniques: gradual_unfreezing.stages={count} but the model has only {len(levels)} layer groups"
            )
        bounds = [round(i * len(levels) / count) for i in range(count + 1)]
        return [{n for level in levels[a:b] for g in level for n in g.params} for a, b in zip(bounds, bounds[1:])]

    def check(self, recipe: Any, model: Any) -> None:
        self.chunks(model)

    def on_fit_start(self, state: Any) -> None:
        model = freezing.unwrap(state.accelerator.unwrap_model(state.model))
        chunks = self.chunks(model)
        frozen = set().union(*chunks[self.stage + 1 :]) if self.stage + 1 < len(chunks) else set()
        freezing.set_trainable(model, frozen, False)

    def on_epoch_start(self, state: Any) -> None:
        model = freezing.unwrap(state.accelerator.unwrap_model(state.model))
        chunks = self.chunks(model)
        target = min(state.epoch // self.every, len(chunks) - 1)
        while self.stage < target:
            self.stage += 1
            freezing.unfreeze(state, chunks[self.stage])
        if self.bn_eval:
            freezing.frozen_modules_to_eval(model)

    def state_dict(self) -> dict[str, Any]:
        return {"stage": self.stage}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stage = state["stage"]


TECHNIQUES.register("gradual_unfreezing")(GradualUnfreezing)


@proposes("techniques")
def _climb_candidates(s: Situation) -> list[Change]:
    """Up to three stages spread over the run's epochs, so the whole model trains in the last ones."""
    epochs = s.recipe.train.epochs
    if epochs < 2 or any(s.has_technique(t) for t in ("gradual_unfreezing", "freeze", "head_warmup")):
        return []
    stages = min(epochs, 3)
    every = max(1, epochs // stages)
    return [Change(f"gradual unfreezing {stages} stages every {every} epochs",
                   techniques=[{"name": "gradual_unfreezing", "stages": stages, "every": every}], group="freezing",
                   cost=0.85, why="the top layers adapt before the lower ones move (ULMFiT): less forgetting")]
