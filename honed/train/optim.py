"""AdamW with weight decay kept off biases and norm weights, one param group per layer group.

Each group carries its layer group's name and `base_lr`: the recipe's LR, or an explicit
`optim.group_lr` entry, or layer-wise decay (ULMFiT/fastai discriminative LRs:
LR = base x factor^depth, depth 0 for the head and growing towards the embeddings).
"""

from __future__ import annotations

import torch

from honed.errors import HonedError, did_you_mean
from honed.models.base import Classifier, LayerGroup, depth_levels
from honed.recipe import OptimSpec


def no_decay(name: str, param: torch.Tensor, patterns: list[str]) -> bool:
    """Biases, norm weights and other 1-D tensors take no weight decay; so do names matching `patterns`."""
    lowered = name.lower()
    return param.ndim <= 1 or any(p.lower() in lowered for p in patterns)


def group_lrs(layers: list[LayerGroup], spec: OptimSpec) -> dict[str, float]:
    """Base LR of every layer group (see module docstring)."""
    names = [g.name for g in layers]
    for name in spec.group_lr:
        if name not in names:
            raise HonedError(
                f"optim.group_lr: unknown layer group '{name}'{did_you_mean(name, names)}; groups: {', '.join(names)}"
            )
    lrs = {}
    for depth, level in enumerate(depth_levels(layers)):
        decayed = spec.lr * (spec.layer_decay**depth if spec.layer_decay else 1.0)
        for group in level:
            lrs[group.name] = spec.group_lr.get(group.name, decayed)
    return lrs


def param_groups(model: Classifier, spec: OptimSpec, only: set[str] | None = None) -> list[dict]:
    """One decay and one no-decay group per layer group, for trainable parameters (in `only`, if
    given); each group carries `group`, `decay` and `base_lr`."""
    named = dict(model.named_parameters())
    layers = model.layer_groups()
    lrs = group_lrs(layers, spec)
    groups = []
    for layer in layers:
        params = [(n, named[n]) for n in layer.params if named[n].requires_grad and (only is None or n in only)]
        for decays in (True, False):
            chosen = [p for n, p in params if no_decay(n, p, spec.no_decay) != decays]
            if chosen:
                groups.append(
                    {
                        "params": chosen,
                        "group": layer.name,
                        "decay": decays,
                        "base_lr": lrs[layer.name],
                        "lr": lrs[layer.name],
                        "weight_decay": spec.weight_decay if decays else 0.0,
                    }
                )
    return groups


def build_optimizer(
    model: Classifier, spec: OptimSpec, order: list[tuple[str, bool]] | None = None
) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters; `order` (group, decay) keys reproduce a saved optimizer's
    group order, which differs from layer order once gradual unfreezing has appended groups."""
    groups = param_groups(model, spec)
    if not groups:
        raise HonedError("techniques: every parameter is frozen, nothing would train; unfreeze at least the head")
    if order is not None:
        rank = {key: i for i, key in enumerate(order)}
        groups.sort(key=lambda g: rank.get((g["group"], g["decay"]), len(rank)))
    return torch.optim.AdamW(groups, lr=spec.lr, betas=spec.betas, eps=spec.eps)


def set_lr(optimizer: torch.optim.Optimizer, multiplier: float) -> float:
    """Every group's LR = its base LR x multiplier; returns the largest (the head's, usually) for logging."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * multiplier
    return max(group["lr"] for group in optimizer.param_groups)
