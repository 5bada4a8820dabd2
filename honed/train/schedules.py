"""Learning-rate schedules as pure functions of the optimizer step (nanoGPT's get_lr).

Each factory returns `multiplier(step) -> float` in [0, 1]; the loop sets every param group's LR
to its base LR times the multiplier, so resuming needs only the step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from honed.errors import HonedError
from honed.registry import Registry

Multiplier = Callable[[int], float]
SCHEDULES: Registry[Multiplier] = Registry("schedule")


def warmup_steps(total: int, ratio: float, steps: int | None) -> int:
    return steps if steps is not None else int(round(total * ratio))


def build_schedule(spec: Any, total: int) -> Multiplier:
    """The recipe's schedule over `total` optimizer steps; warmup longer than training is an error."""
    warmup = warmup_steps(total, spec.warmup_ratio, spec.warmup_steps)
    if warmup > total:
        raise HonedError(f"schedule.warmup_steps: {warmup} warmup steps exceed the {total} training steps; lower it or train longer")
    kwargs = {k: v for k, v in spec.model_dump().items() if k not in ("name", "warmup_ratio", "warmup_steps")}
    return SCHEDULES.build(spec.name, "schedule.name", total=total, warmup=warmup, **kwargs)


def _with_warmup(decay: Callable[[float], float], total: int, warmup: int) -> Multiplier:
    """Linear warmup from 0 to 1 over `warmup` steps, then `decay(progress in [0, 1])`."""

    def multiplier(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return decay(min(1.0, progress))

    return multiplier


@SCHEDULES.register("constant")
def constant(total: int, warmup: int) -> Multiplier:
    return _with_warmup(lambda p: 1.0, total, warmup)


@SCHEDULES.register("linear")
def linear(total: int, warmup: int) -> Multiplier:
    return _with_warmup(lambda p: 1.0 - p, total, warmup)


@SCHEDULES.register("cosine")
def cosine(total: int, warmup: int) -> Multiplier:
    return _with_warmup(lambda p: 0.5 * (1.0 + math.cos(math.pi * p)), total, warmup)
