"""Numerical faults: a NaN or infinite gradient skips its optimizer step, up to `train.max_bad_steps`.

One bad step (a spike, one odd batch) should not ruin every weight, so the loop checks the gradients'
total norm before each optimizer step applies and drops the step when it is not finite; past the limit
the run stops with one line naming the step and the likely cause, and the last checkpoint (written
before the fault) is the last good one. Under fp16 the grad scaler already skips overflowing steps
(that is how it finds its scale); those are counted and reported, not treated as faults. The loss is
checked where the loop reads it anyway (the progress refresh), so no extra GPU sync is spent on it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from honed.errors import HonedError


class NumericalFault(HonedError):
    """The run met more non-finite steps than `train.max_bad_steps` allows."""


def total_norm(accelerator: Any, parameters: Any, max_norm: float | None) -> torch.Tensor:
    """The gradients' total norm, clipping to `max_norm` when set (under fp16 the grads are unscaled first);
    without clipping the norm is still measured (clipping to infinity leaves the gradients as they are)."""
    return accelerator.clip_grad_norm_(parameters, max_norm or math.inf)


class Guard:
    """Counts skipped steps in the run's state (`bad_steps`, `scaler_skips`, both saved with the checkpoint)."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.limit = state.recipe.train.max_bad_steps
        self.scaled = state.accelerator.scaler is not None  # fp16: the scaler decides about inf/NaN gradients

    def step_is_finite(self, norm: torch.Tensor | None) -> bool:
        """Whether the optimizer step may apply; a non-finite gradient is counted and, past the limit, stops
        the run. Reading the norm syncs a GPU once per optimizer step (not per micro-batch)."""
        if self.scaled or norm is None or bool(torch.isfinite(norm)):
            return True
        self.state.bad_steps += 1
        if self.limit is not None and self.state.bad_steps > self.limit:
            raise self.fault(f"the gradient norm is {float(norm)}")
        return False

    def after_step(self) -> None:
        """Under fp16, count the steps the grad scaler skipped (it found inf/NaN gradients and lowered its scale)."""
        if self.scaled and self.state.accelerator.optimizer_step_was_skipped:
            self.state.scaler_skips += 1

    def fault(self, what: str) -> NumericalFault:
        """The one-line error for a fault in `what`, with the likely cause and where the last good checkpoint is."""
        cause = (
            "fp16 overflow: the values exceed float16's range; use train.precision=bf16 or no, or a lower optim.lr"
            if self.scaled
            else "the learning rate is likely too high (lower optim.lr or set train.max_grad_norm), "
            "or the data holds NaN/inf values"
        )
        count = f" ({self.state.bad_steps} skipped, train.max_bad_steps={self.limit})" if self.state.bad_steps else ""
        last = self.state.run_dir / "checkpoints" / "last.pt"
        kept = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint had been written yet"
        return NumericalFault(f"training stopped at step {self.state.step + 1}: {what}{count}; {cause}; {kept}")


class LossMeter:
    """The epoch's mean finite training loss, summed on the device and read only at the progress refresh;
    a whole refresh window of non-finite losses (which the fp16 scaler would skip for ever) is a fault."""

    def __init__(self, device: torch.device, guard: Guard) -> None:
        self.guard = guard
        self.total = torch.zeros((), device=device)
        self.finite = torch.zeros((), device=device)
        self.batches = 0
        self._seen = (0, 0.0)  # (batches, finite losses) at the last refresh

    def add(self, loss: torch.Tensor) -> None:
        value = loss.detach().float().to(self.total.device)
        ok = torch.isfinite(value)
        self.total += torch.where(ok, value, torch.zeros_like(value))
        self.finite += ok
        self.batches += 1

    def refresh(self) -> float:
        """The mean so far (syncs a GPU); raises when no loss since the last refresh was finite."""
        finite = float(self.finite)
        if self.batches > self._seen[0] and finite == self._seen[1]:
            raise self.guard.fault(f"the training loss was NaN/inf for the last {self.batches - self._seen[0]} batches")
        self._seen = (self.batches, finite)
        return self.mean()

    def mean(self) -> float:
        return float(self.total) / max(1.0, float(self.finite))
