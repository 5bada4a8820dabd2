"""Exponential moving average of the weights (timm's ModelEmaV3, Polyak averaging).

After every optimizer step the average moves towards the live weights:
`ema = ema + (1 - d) * (w - ema)`, with `d = min(decay, (1 + n) / (10 + n))` during warm-up so the
early, random-ish weights are forgotten quickly. Validation swaps the averaged weights in and back
out again, so the metrics, the best-checkpoint choice and hence the final model and test metrics
use the average; without a validation set the average replaces the weights at the end.
"""

from __future__ import annotations

from typing import Any

import torch

from honed.errors import HonedError
from honed.proposals import Change, Situation, proposes
from honed.techniques import TECHNIQUES, flagged
from honed.train.events import Technique
from honed.train.schedules import planned_steps


def check_one_average(recipe: Any) -> None:
    """Two techniques that swap other weights in for evaluation would nest (after-events fire in
    reverse), but validation would then score only the inner one's weights: only one may run."""
    names = flagged(recipe, "swaps_weights_for_eval")
    if len(names) > 1:
        raise HonedError(
            f"techniques: {' and '.join(names)} each swap averaged weights in for evaluation; keep only one"
        )


def ema_decay(decay: float, updates: int, warmup: bool) -> float:
    """The decay of update number `updates` (0-based)."""
    return min(decay, (1 + updates) / (10 + updates)) if warmup else decay


@torch.no_grad()
def copy_into(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy `tensors` into the model's parameters and buffers in place (dtype cast as needed)."""
    live = model.state_dict()
    for name, tensor in tensors.items():
        live[name].copy_(tensor)


class EMA(Technique):
    """float32 copies of the weights and buffers, moved after each step and swapped in for evaluation."""

    swaps_weights_for_eval = True
    acts_on_head_only = True

    def __init__(self, decay: float = 0.999, warmup: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError("decay must be in [0, 1)")
        self.decay, self.warmup, self.updates = float(decay), bool(warmup), 0
        self.shadow: dict[str, torch.Tensor] = {}
        self.backup: dict[str, torch.Tensor] = {}
        self.pending: dict[str, torch.Tensor] | None = None

    @staticmethod
    def model(state: Any) -> torch.nn.Module:
        return state.accelerator.unwrap_model(state.model)

    def start(self, model: torch.nn.Module) -> None:
        """Averages start from the current weights, or from a resumed checkpoint's."""
        saved = model.state_dict()
        live = [
            *model.named_parameters(),
            *((n, b) for n, b in model.named_buffers() if n in saved),
        ]  # tied weights once
        self.shadow = {n: t.detach().float().clone() if t.is_floating_point() else t.detach().clone() for n, t in live}
        if self.pending is not None:
            for name, tensor in self.pending.items():
                self.shadow[name].copy_(tensor)
            self.pending = None

    def swap_in(self, model: torch.nn.Module) -> None:
        live = model.state_dict()
        self.backup = {n: t.detach().clone() for n, t in live.items()}
        copy_into(model, self.shadow)

    def swap_out(self, model: torch.nn.Module) -> None:
        if self.backup:
            copy_into(model, self.backup)
            self.backup = {}

    def check(self, recipe: Any, model: Any) -> None:
        check_one_average(recipe)

    def on_fit_start(self, state: Any) -> None:
        self.start(self.model(state))

    @torch.no_grad()
    def on_after_optimizer_step(self, state: Any) -> None:
        """Move the average towards the trainable weights and buffers (frozen weights do not move)."""
        model = self.model(state)
        pairs = [(self.shadow[n], p) for n, p in model.named_parameters() if p.requires_grad]
        pairs += [(self.shadow[n], b) for n, b in model.named_buffers() if b.is_floating_point() and n in self.shadow]
        weight = 1.0 - ema_decay(self.decay, self.updates, self.warmup)
        if pairs:
            averages, live = zip(*pairs, strict=True)
            torch._foreach_lerp_(list(averages), [t.float() for t in live], weight)
        for name, buffer in model.named_buffers():
            if not buffer.is_floating_point() and name in self.shadow:
                self.shadow[name].copy_(buffer)  # counters such as num_batches_tracked
        self.updates += 1

    def on_evaluate_start(self, state: Any) -> None:
        self.swap_in(self.model(state))

    def on_evaluate_end(self, state: Any) -> None:
        self.swap_out(self.model(state))

    def on_fit_end(self, state: Any) -> None:
        """No validation chose a best checkpoint: the average is the final model."""
        if state.best_epoch is None and self.updates:
            copy_into(self.model(state), self.shadow)

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates, self.pending = int(state["updates"]), state["shadow"]


TECHNIQUES.register("ema")(EMA)


def short_run_decay(steps: int) -> float:
    """An EMA decay whose averaging window is about a tenth of the run: 1 - 1/(0.1 * steps) in [0.9, 0.9999]."""
    return round(min(0.9999, max(0.9, 1.0 - 1.0 / (0.1 * steps))), 4)


@proposes("techniques")
def _climb_candidates(s: Situation) -> list[Change]:
    if flagged(s.recipe, "swaps_weights_for_eval"):  # EMA itself, or SWA: only one average per run
        return []
    decay = short_run_decay(planned_steps(s))
    return [Change(f"ema decay {decay:g}", techniques=[{"name": "ema", "decay": decay}], group="weight_average",
                   why="an average of the weights over about the last tenth of training: smoother, often better")]
