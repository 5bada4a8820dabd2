"""Unstructured magnitude pruning masks: build them with torch.nn.utils.prune, apply, count.

Masks are chosen by `torch.nn.utils.prune` (global_unstructured with L1Unstructured across every
Linear/Conv weight, or l1_unstructured per layer) and made permanent at once with `prune.remove`,
so the model keeps plain `weight` tensors (zeros where pruned) and its state_dict, checkpoints and
saved folders look like any other model's; the masks are kept separately as bool tensors keyed by
parameter name, and re-applied after every optimizer step to keep pruned weights at zero.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
SCOPES = ("global", "layer")


def prunable(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(module name, module) of every Linear/Conv layer with a weight: backbone and head alike."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, PRUNABLE) and getattr(m, "weight", None) is not None
    ]


def check_sparsity(sparsity: float, field: str = "sparsity") -> float:
    from honed.errors import HonedError

    if not 0.0 <= float(sparsity) < 1.0:
        raise HonedError(f"{field}: {sparsity} is outside [0, 1); give the fraction of weights to zero, e.g. 0.5")
    return float(sparsity)


@torch.no_grad()
def compute_masks(model: nn.Module, sparsity: float, scope: str = "global") -> dict[str, torch.Tensor]:
    """Zero the smallest-magnitude `sparsity` fraction of the weights (over all layers together, or in
    each layer) and return the masks {"<module>.weight": bool tensor}. Weights already zero have the
    smallest magnitude, so a growing sparsity keeps earlier choices."""
    layers = prunable(model)
    if scope == "global":
        prune.global_unstructured(
            [(m, "weight") for _, m in layers], pruning_method=prune.L1Unstructured, amount=sparsity
        )
    elif scope == "layer":
        for _, module in layers:
            prune.l1_unstructured(module, "weight", amount=sparsity)
    else:
        raise ValueError(f"scope must be one of {SCOPES}")
    masks = {}
    for name, module in layers:
        masks[f"{name}.weight" if name else "weight"] = module.weight_mask.detach().bool().clone()
        prune.remove(module, "weight")  # plain `weight` again, with the zeros baked in
    return masks


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Multiply each masked weight by its mask in place (pruned weights back to exactly zero)."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        param = params[name]
        param.mul_(mask.to(param.device, param.dtype))


def layer_sparsity(model: nn.Module) -> dict[str, float]:
    """Fraction of exact zeros in each prunable weight."""
    return {f"{n}.weight": float((m.weight == 0).float().mean()) for n, m in prunable(model)}


def global_sparsity(model: nn.Module) -> float:
    """Fraction of exact zeros over all prunable weights together."""
    layers = prunable(model)
    zeros = sum(int((m.weight == 0).sum()) for _, m in layers)
    return zeros / max(sum(m.weight.numel() for _, m in layers), 1)
