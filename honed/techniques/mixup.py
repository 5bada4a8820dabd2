"""Mixup (Zhang et al. 2018): train on convex blends of image pairs and of their labels.

Each training batch (with probability `p`) is replaced by torchvision's `v2.MixUp` of itself: images
x' = lam * x_i + (1 - lam) * x_j and soft targets likewise, lam ~ Beta(alpha, alpha), j the next row
(the loader shuffles). The losses in honed.losses take those soft targets. Randomness comes from
torch's global RNG, which checkpoints save and restore, so a resumed run mixes exactly as an
uninterrupted one. Evaluation batches are never mixed (evaluation fires no on_batch_start).
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision.transforms import v2

from honed.errors import HonedError
from honed.proposals import Change, Situation, proposes
from honed.techniques import TECHNIQUES, flagged
from honed.train.events import Technique


class BatchMix(Technique):
    """Replaces batch["pixel_values"] and batch["labels"] with a torchvision batch transform's output."""

    mixes_batches = True
    tasks = ("classification", "regression")  # torchvision's mixers take class indices, not multi-hot label sets

    name = "batch_mix"
    transform: type[v2.Transform] = v2.MixUp

    def __init__(self, alpha: float = 1.0, p: float = 1.0) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha!r}")
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p!r}")
        self.alpha, self.p = float(alpha), float(p)
        self._mix: v2.Transform | None = None

    def check(self, recipe: Any, model: Any) -> None:
        """Mixing needs image batches: a text recipe fails before training starts."""
        if recipe.data.kind != "image":
            where = next(
                (f"techniques.{i} '{t.name}'" for i, t in enumerate(recipe.techniques) if t.name == self.name),
                f"techniques: {self.name}",
            )
            raise HonedError(
                f"{where}: mixup/cutmix mix images; this recipe trains {recipe.data.kind} "
                f"(data.kind={recipe.data.kind}); remove it from techniques"
            )

    def on_batch_start(self, state: Any) -> None:
        if self.p < 1.0 and float(torch.rand(())) >= self.p:
            return
        if self._mix is None or self._mix.num_classes != len(state.labels):
            self._mix = self.transform(alpha=self.alpha, num_classes=len(state.labels))
        batch = state.batch
        batch["pixel_values"], batch["labels"] = self._mix(batch["pixel_values"], batch["labels"])


class MixUp(BatchMix):
    """Blend whole images; alpha 0.2-0.4 is usual for fine-tuning, larger mixes harder."""

    name = "mixup"
    transform = v2.MixUp

    def __init__(self, alpha: float = 0.2, p: float = 1.0) -> None:
        super().__init__(alpha, p)


TECHNIQUES.register("mixup")(MixUp)


def mixing_applies(s: Situation) -> bool:
    """Batch mixing blends images and class labels, one mixer per run."""
    return s.kind == "image" and s.task == "classification" and not flagged(s.recipe, "mixes_batches")


@proposes("techniques")
def _climb_candidates(s: Situation) -> list[Change]:
    """Half the batches mixed: full-strength mixup needs longer runs than a short fine-tune."""
    if not mixing_applies(s):
        return []
    return [Change("mixup alpha 0.2 p 0.5", techniques=[{"name": "mixup", "alpha": 0.2, "p": 0.5}], group="batch_mix",
                   why="blended image pairs with blended labels: a smoother decision boundary")]
