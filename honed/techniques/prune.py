"""Gradual magnitude pruning during fine-tuning (Zhu & Gupta 2017, "To prune, or not to prune").

The sparsity follows a cubic schedule from 0 at `start` to `sparsity` at `end` (fractions of the
training steps): s(t) = s_f * (1 - (1 - p)^3), p = (t - t0) / (t1 - t0) clipped to [0, 1], so it
prunes fast early, when many weights are redundant, and slowly near the target. Every `every`
steps the masks are re-chosen by magnitude (torch.nn.utils.prune, see honed/models/masks.py); after
every optimizer step the masks are applied, so pruned weights stay exactly zero. The model always
holds plain weights (the masks are made permanent at once), so checkpoints and the saved model have
no weight_orig/weight_mask; the masks are saved with the checkpoint, so a resumed run is exact.
Epochs evaluated before the target sparsity is reached never count as the best checkpoint, so the
final model is at the target sparsity.
"""

from __future__ import annotations

from typing import Any

import torch

from honed.errors import HonedError
from honed.models.masks import SCOPES, apply_masks, compute_masks
from honed.techniques import TECHNIQUES, flagged
from honed.train.events import Technique


def cubic_sparsity(step: int, total: int, sparsity: float, start: float, end: float) -> float:
    """The target sparsity after optimizer step `step` of `total`."""
    t0, t1 = round(start * total), round(end * total)
    if step < t0:
        return 0.0
    progress = 1.0 if t1 <= t0 else min((step - t0) / (t1 - t0), 1.0)
    return sparsity * (1.0 - (1.0 - progress) ** 3)


class Prune(Technique):
    keeps_weights_sparse = True

    def __init__(
        self, sparsity: float = 0.5, start: float = 0.0, end: float = 0.8, scope: str = "global", every: int = 1
    ) -> None:
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity {sparsity} is outside [0, 1)")
        if not 0.0 <= start <= end <= 1.0:
            raise ValueError("start and end must satisfy 0 <= start <= end <= 1")
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
        if every < 1:
            raise ValueError("every must be >= 1")
        self.sparsity, self.start, self.end, self.scope, self.every = (
            float(sparsity),
            float(start),
            float(end),
            scope,
            int(every),
        )
        self.masks: dict[str, torch.Tensor] = {}
        self.current = 0.0

    def check(self, recipe: Any, model: Any) -> None:
        averaged = flagged(recipe, "swaps_weights_for_eval")
        if averaged:
            raise HonedError(
                f"techniques: prune with {averaged[0]}: averaged weights are not sparse; use one or the other"
            )

    @staticmethod
    def model(state: Any) -> torch.nn.Module:
        return state.accelerator.unwrap_model(state.model)

    def target(self, step: int, total: int) -> float:
        return cubic_sparsity(step, total, self.sparsity, self.start, self.end)

    def update(self, state: Any) -> None:
        """Re-choose masks when the schedule has grown (every `every` steps, and at the target); else re-apply."""
        model = self.model(state)
        apply_masks(model, self.masks)
        goal = self.target(state.step, state.total_steps)
        if goal > self.current and (state.step % self.every == 0 or goal >= self.sparsity):
            self.masks = compute_masks(model, goal, self.scope)
            self.current = goal

    def on_fit_start(self, state: Any) -> None:
        self.update(
            state
        )  # a schedule that starts at step 0 prunes before the first step; a resume re-applies its masks

    @torch.no_grad()
    def on_after_optimizer_step(self, state: Any) -> None:
        self.update(state)

    def on_evaluate_end(self, state: Any) -> None:
        """An epoch below the target sparsity must not be restored as the best model at the end."""
        if self.current < self.sparsity:
            state.best_value, state.best_epoch = None, None
            best = state.run_dir / "checkpoints" / "best.pt"
            if state.accelerator.is_main_process and best.is_file():
                best.unlink()

    def on_fit_end(self, state: Any) -> None:
        apply_masks(self.model(state), self.masks)

    def state_dict(self) -> dict[str, Any]:
        return {"masks": self.masks, "current": self.current}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.masks, self.current = dict(state["masks"]), float(state["current"])


TECHNIQUES.register("prune")(Prune)
