"""Test-only techniques that inject faults at a chosen optimizer step: a signal, NaN losses."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any


class SignalAtStep:
    """Sends `signal` (a name such as SIGTERM) to its own process `times` times once `step` ends; a marker
    file makes it fire in one run only (the resumed run goes on)."""

    def __init__(self, step: int, marker: str, signal: str = "SIGTERM", times: int = 1) -> None:
        self.step, self.marker, self.signum, self.times = step, Path(marker), getattr(signal_module, signal), times

    def on_after_optimizer_step(self, state: Any) -> None:
        if state.step == self.step and not self.marker.exists():
            self.marker.touch()
            for _ in range(self.times):
                os.kill(os.getpid(), self.signum)


signal_module = signal


class NanLossAtSteps:
    """Makes the loss NaN on the batches that lead to the listed optimizer steps (1-based), so their
    gradients are NaN: what an LR far too high or one bad row does."""

    def __init__(self, steps: list[int]) -> None:
        self.steps = set(steps)

    def on_after_loss(self, state: Any) -> None:
        if state.step + 1 in self.steps:
            state.loss = state.loss * float("nan")
