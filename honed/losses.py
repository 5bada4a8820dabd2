"""Losses by name: `loss(logits, labels) -> scalar`. Factories take flat keyword arguments."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from honed.registry import Registry

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOSSES: Registry[Loss] = Registry("loss")


@LOSSES.register("cross_entropy")
def cross_entropy(label_smoothing: float = 0.0) -> Loss:
    return lambda logits, labels: F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


def build_loss(spec: Any, class_counts: tuple[int, ...]) -> Loss:
    """The recipe's loss; a factory that takes `class_counts` gets the training-label counts."""
    kwargs = {k: v for k, v in spec.model_dump().items() if k != "name"}
    factory = LOSSES.get(spec.name, "loss.name")
    if "class_counts" in inspect.signature(factory).parameters:
        kwargs["class_counts"] = class_counts
    return LOSSES.build(spec.name, "loss.name", **kwargs)
