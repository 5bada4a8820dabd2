"""Losses by name: `loss(logits, labels) -> scalar`. Factories take flat keyword arguments."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from honed.registry import Registry

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOSSES: Registry[Loss] = Registry("loss")


@LOSSES.register("cross_entropy")
def cross_entropy(label_smoothing: float = 0.0) -> Loss:
    return lambda logits, labels: F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
