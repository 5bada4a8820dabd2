"""Auxiliary objectives: an extra loss on each training batch through the same backbone, with its
own small head (ULMFiT-style "keep the language model alive"; rotation prediction for images,
Gidaris et al. 2018). This file holds the shared mechanics; the techniques are `aux_mlm`
(masked-LM on text batches), `aux_rotation` (image rotation) and `aux_label` (a second label
column of the training table), one file each.

The loss added to the task loss is `weight * aux_loss`, with the weight optionally decayed linearly
to zero over training (`decay: true`), so the auxiliary task shapes early features but not the end
of the fine-tune. The auxiliary head lives in the technique, never in the model: it trains with its
own AdamW at the loop's current LR, is saved with checkpoints (exact resume) and is dropped at the
end, so the saved model and prediction are the main task's only. aux_mlm and aux_rotation cost one
more forward and backward pass per step; aux_label reads the main pass's features.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from honed.errors import HonedError
from honed.train import freezing
from honed.train.events import Technique


class AuxiliaryObjective(Technique):
    """Shared mechanics: weight schedule, private optimizer for the head, checkpoint state."""

    kind = ""
    field = ""

    def __init__(self, weight: float = 0.1, decay: bool = False, lr_scale: float = 1.0) -> None:
        if weight <= 0:
            raise ValueError(f"weight must be > 0 (got {weight})")
        if lr_scale <= 0:
            raise ValueError(f"lr_scale must be > 0 (got {lr_scale})")
        self.weight, self.decay, self.lr_scale = float(weight), bool(decay), float(lr_scale)
        self.head: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._pending: dict[str, Any] | None = None
        self.last_loss = 0.0

    def check(self, recipe: Any, model: Any) -> None:
        if self.kind and recipe.data.kind != self.kind:
            raise HonedError(f"{self.field}: works on data.kind={self.kind} only, this recipe is {recipe.data.kind}")

    def build_head(self, model: Any) -> nn.Module:
        raise NotImplementedError

    def aux_loss(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def weight_at(self, step: int, total: int) -> float:
        return self.weight * (1.0 - step / max(total, 1)) if self.decay else self.weight

    def on_fit_start(self, state: Any) -> None:
        model = freezing.unwrap(state.accelerator.unwrap_model(state.model))
        with torch.random.fork_rng(
            devices=[]
        ):  # RNG-neutral: a resumed run's random stream stays the uninterrupted one's
            torch.manual_seed(state.recipe.seed)
            self.head = self.build_head(model).to(state.accelerator.device)
        self.optimizer = torch.optim.AdamW(
            self.head.parameters(),
            lr=state.recipe.optim.lr * self.lr_scale,
            weight_decay=state.recipe.optim.weight_decay,
        )
        if self._pending is not None:  # a resume restored state before the head existed
            self.head.load_state_dict(self._pending["head"])
            self.optimizer.load_state_dict(self._pending["optimizer"])
            self._pending = None

    def on_after_loss(self, state: Any) -> None:
        weight = self.weight_at(state.step, state.total_steps)
        if weight <= 0 or self.head is None:
            return
        model = freezing.unwrap(state.accelerator.unwrap_model(state.model))
        loss = self.aux_loss(model, state.batch)
        self.last_loss = float(loss.detach())
        state.loss = state.loss + weight * loss

    def on_after_optimizer_step(self, state: Any) -> None:
        """Step the head with the loop's current LR (the schedule's warmup and decay apply to it too)."""
        assert self.optimizer is not None
        for group in self.optimizer.param_groups:
            group["lr"] = state.lr * self.lr_scale
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any] | None:
        if self.head is None or self.optimizer is None:
            return None
        return {"head": self.head.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = state


def head_linear(model: Any, field: str = "techniques: aux_rotation") -> nn.Linear:
    """The nn.Linear that holds the model's fresh head weights (its input = pooled features)."""
    named = dict(model.named_modules())
    for name in sorted({p.rpartition(".")[0] for p in model.head_params}, key=len):
        if isinstance(named.get(name), nn.Linear):
            return named[name]
    raise HonedError(f"{field}: the model's head is not a linear layer; features cannot be taken from it")
