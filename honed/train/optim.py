"""AdamW with weight decay kept off biases and norm weights, one param group per layer group."""

from __future__ import annotations

import torch

from honed.models.base import Classifier
from honed.recipe import OptimSpec


def no_decay(name: str, param: torch.Tensor, patterns: list[str]) -> bool:
    """Biases, norm weights and other 1-D tensors take no weight decay; so do names matching `patterns`."""
    lowered = name.lower()
    return param.ndim <= 1 or any(p.lower() in lowered for p in patterns)


def param_groups(model: Classifier, spec: OptimSpec) -> list[dict]:
    """One decay and one no-decay group per layer group; each carries `group` and `base_lr`."""
    named = dict(model.named_parameters())
    groups = []
    for layer in model.layer_groups():
        params = [(n, named[n]) for n in layer.params if named[n].requires_grad]
        for decays in (True, False):
            chosen = [p for n, p in params if no_decay(n, p, spec.no_decay) != decays]
            if chosen:
                groups.append({
                    "params": chosen, "group": layer.name, "base_lr": spec.lr, "lr": spec.lr,
                    "weight_decay": spec.weight_decay if decays else 0.0,
                })
    return groups


def build_optimizer(model: Classifier, spec: OptimSpec) -> torch.optim.Optimizer:
    return torch.optim.AdamW(param_groups(model, spec), lr=spec.lr, betas=spec.betas, eps=spec.eps)


def set_lr(optimizer: torch.optim.Optimizer, multiplier: float) -> float:
    """Every group's LR = its base LR x multiplier; returns the first group's LR for logging."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * multiplier
    return optimizer.param_groups[0]["lr"]
