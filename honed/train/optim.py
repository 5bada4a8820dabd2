"""AdamW with weight decay kept off biases and norm weights, one param group per layer group.

Each group carries its layer group's name and `base_lr`: the recipe's LR, or an explicit
`optim.group_lr` entry, or layer-wise decay (ULMFiT/fastai discriminative LRs:
LR = base x factor^depth, depth 0 for the head and growing towards the embeddings).
"""

from __future__ import annotations

import math

import torch

from honed.errors import HonedError, did_you_mean
from honed.models.base import Classifier, LayerGroup, depth_levels
from honed.proposals import Change, Situation, proposes
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


def short(value: float) -> str:
    """A number as a candidate's name shows it: 2e-4, 2.5e-5, 0.1."""
    if value == 0 or abs(value) >= 0.01:
        return f"{value:.2g}"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _lr_changes(s: Situation) -> list[Change]:
    """The LR finder's suggestion (when it ran) and the current LR halved and doubled (or tripled)."""
    current = s.recipe.optim.lr
    picks: list[tuple[float, str]] = []
    if s.lr_found:
        picks.append((s.lr_found, "the LR range test's suggestion"))
    picks += [(current * 0.5, "half the current LR: steadier updates of the pretrained weights"),
              (current * 2, "twice the current LR: short fine-tunes often under-train")]
    if not s.lr_found:
        picks.append((current * 3, "three times the current LR: short fine-tunes often under-train"))
    out: dict[float, Change] = {}
    for value, why in picks:
        lr = float(f"{value:.2g}")
        if lr <= 10.0 and not math.isclose(lr, current, rel_tol=1e-6) and lr not in out:
            out[lr] = Change(f"optim.lr {short(lr)}", {"optim.lr": lr}, group="lr", why=why)
    return list(out.values())


@proposes("optimisation")
def _climb_candidates(s: Situation) -> list[Change]:
    """Learning rate, batch size, layer-wise LR decay and weight decay."""
    spec, out = s.recipe.optim, _lr_changes(s)
    batch = s.recipe.train.batch_size
    if batch >= 16:
        out.append(Change(f"train.batch_size {batch // 2}", {"train.batch_size": batch // 2}, group="batch",
                          why="smaller batches: twice the updates per epoch, with more gradient noise", cost=1.3))
    if s.kind == "text" and spec.layer_decay is None:
        out.append(Change("optim.layer_decay 0.8", {"optim.layer_decay": 0.8}, group="layer_decay",
                          why="layer-wise LR decay: lower layers hold general features and move less"))
    if spec.weight_decay < 0.1:
        out.append(Change("optim.weight_decay 0.1", {"optim.weight_decay": 0.1}, group="weight_decay",
                          why="stronger decoupled weight decay keeps the fine-tune closer to small weights"))
    return out
