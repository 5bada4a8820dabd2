"""The LR range test as a callback on the ordinary training loop (fastai's `LRFinder` callback).

`LRRangeTest` sets the learning rate of every optimizer step itself, growing it exponentially from
`start` to `end` over `steps` steps, records each step's loss smoothed as fastai does (exponential
moving average, beta 0.98, bias-corrected) and ends the fit with `CancelFit` once the smoothed
loss passes 4x its best, turns NaN, or the steps run out. Nothing else of the fit runs after it
(no final evaluation, no saved model), so it rides on any loop run: `range_test` in
honed/train/lr_find.py, or `honed.fit(recipe, callbacks=[LRRangeTest(...)])`.

The swept LR is `optim.lr`: every param group keeps its ratio to it (layer-wise decay, group_lr).
"""

from __future__ import annotations

import math
from typing import Any

from honed.train.events import CancelFit, Technique
from honed.train.optim import set_lr

BETA = 0.98  # loss smoothing, as fastai
DIVERGED = 4.0  # stop once the smoothed loss passes this multiple of its best


class LRRangeTest(Technique):
    """Exponentially growing LR per optimizer step; raw and smoothed loss per step in `lrs`, `raw`
    and `smoothed`; `diverged` tells why it stopped. A run-time callback: it holds no checkpoint state."""

    def __init__(self, start: float, end: float, steps: int) -> None:
        self.start, self.end, self.steps = start, end, steps
        self.lrs: list[float] = []
        self.raw: list[float] = []
        self.smoothed: list[float] = []
        self.diverged = False
        self._window: list[float] = []  # losses of the batches accumulated into the coming step
        self._average, self._best = 0.0, math.inf

    def lr_at(self, index: int) -> float:
        """The LR of the `index`-th step (0-based): start x (end/start)^(index/(steps-1))."""
        return self.start * (self.end / self.start) ** (index / (self.steps - 1))

    def on_after_loss(self, state: Any) -> None:
        # the mean over processes, so every process sees the same curve and stops at the same step
        self._window.append(float(state.accelerator.reduce(state.loss.detach(), reduction="mean")))

    def on_before_optimizer_step(self, state: Any) -> None:
        """Runs after the loop applied its schedule: the range test's LR wins (the head's group at it)."""
        state.lr = set_lr(state.optimizer, self.lr_at(len(self.lrs)) / state.recipe.optim.lr)

    def on_after_optimizer_step(self, state: Any) -> None:
        loss = sum(self._window) / max(1, len(self._window))
        self._window = []
        self.lrs.append(self.lr_at(len(self.lrs)))
        self.raw.append(loss)
        self._average = BETA * self._average + (1 - BETA) * loss
        smooth = self._average / (1 - BETA ** len(self.lrs))
        self.smoothed.append(smooth)
        if not math.isfinite(smooth) or smooth > DIVERGED * self._best:
            self.diverged = True
            raise CancelFit(f"lr range test: the loss diverged at lr {self.lrs[-1]:.2e}")
        self._best = min(self._best, smooth)
        if len(self.lrs) >= self.steps:
            raise CancelFit(f"lr range test: all {self.steps} steps ran")
