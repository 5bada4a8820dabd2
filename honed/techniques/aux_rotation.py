"""`aux_rotation`: predict each image's rotation (0/90/180/270 degrees) from the pooled features (see aux_base.py)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from honed.errors import HonedError
from honed.proposals import Change, Situation, proposes
from honed.techniques import TECHNIQUES
from honed.techniques.aux_base import AuxiliaryObjective, head_linear


class AuxRotation(AuxiliaryObjective):
    kind, field = "image", "techniques: aux_rotation"

    def check(self, recipe: Any, model: Any) -> None:
        super().check(recipe, model)
        if not getattr(model, "head_params", None):
            raise HonedError(f"{self.field}: the model has no known classification head to take features from")

    def build_head(self, model: Any) -> nn.Module:
        self.head_module = head_linear(model)
        return nn.Linear(self.head_module.in_features, 4)

    def aux_loss(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        assert self.head is not None
        images = batch["pixel_values"]
        turns = torch.randint(4, (images.shape[0],), device=images.device)
        rotated = torch.stack([torch.rot90(img, int(k), dims=(-2, -1)) for img, k in zip(images, turns, strict=True)])
        features: list[torch.Tensor] = []
        hook = self.head_module.register_forward_hook(lambda _m, args, _out: features.append(args[0]))
        try:
            model(pixel_values=rotated)
        finally:
            hook.remove()
        return nn.functional.cross_entropy(self.head(features[0].flatten(1)), turns)


TECHNIQUES.register("aux_rotation")(AuxRotation)


@proposes("techniques")
def _climb_candidates(s: Situation) -> list[Change]:
    """Rotation prediction next to the task, its weight decayed to zero over the run."""
    if s.kind != "image" or s.has_technique("aux_rotation"):
        return []
    return [Change("aux rotation weight 0.1", techniques=[{"name": "aux_rotation", "weight": 0.1, "decay": True}],
                   group="auxiliary", cost=2.0,
                   why="predicting each image's rotation keeps the features about shape, not shortcuts")]
