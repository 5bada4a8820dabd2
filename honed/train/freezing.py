"""Which parameters train: select them by layer group, glob pattern or block count, freeze and
unfreeze them, and add newly unfrozen ones to a live optimizer (Lightning's
`unfreeze_and_add_param_group`), leaving the optimizer state of the rest untouched."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from torch import nn

from honed.errors import HonedError, did_you_mean
from honed.models.base import LayerGroup
from honed.train.optim import param_groups


def groups_of(model: Any) -> list[LayerGroup]:
    return unwrap(model).layer_groups()


def unwrap(model: Any) -> Any:
    return model.module if hasattr(model, "module") and not hasattr(model, "layer_groups") else model


def names_in_groups(model: Any, names: list[str], field: str) -> set[str]:
    """Parameter names of the named layer groups; an unknown group name is an error."""
    groups = {g.name: g for g in groups_of(model)}
    chosen: set[str] = set()
    for name in names:
        if name not in groups:
            raise HonedError(
                f"{field}: unknown layer group '{name}'{did_you_mean(name, groups)}; groups: {', '.join(groups)}"
            )
        chosen.update(groups[name].params)
    return chosen


def names_matching(model: Any, patterns: list[str], field: str) -> set[str]:
    """Parameter names matching any glob pattern (`hf.bert.encoder.layer.0.*`); a pattern matching
    nothing is an error."""
    names = [n for n, _ in unwrap(model).named_parameters()]
    chosen: set[str] = set()
    for pattern in patterns:
        hits = {n for n in names if fnmatchcase(n, pattern)}
        if not hits:
            raise HonedError(f"{field}: pattern '{pattern}' matches no parameter (e.g. '{names[0]}')")
        chosen |= hits
    return chosen


def names_below_last_blocks(model: Any, keep: int, field: str) -> set[str]:
    """Everything except the last `keep` blocks and the groups after them (neck, head)."""
    groups = groups_of(model)
    blocks = [i for i, g in enumerate(groups) if g.name.startswith("block.")]
    if keep < 0 or keep > len(blocks):
        raise HonedError(f"{field}: all_but_last={keep} but the model has {len(blocks)} blocks")
    cut = blocks[len(blocks) - keep] if keep else (blocks[-1] + 1 if blocks else len(groups) - 1)
    return {n for g in groups[:cut] for n in g.params}


def trainable(model: Any) -> set[str]:
    return {n for n, p in unwrap(model).named_parameters() if p.requires_grad}


def set_trainable(model: Any, names: set[str], flag: bool) -> None:
    for name, param in unwrap(model).named_parameters():
        if name in names:
            param.requires_grad_(flag)


def unfreeze(state: Any, names: set[str]) -> None:
    """Make `names` trainable and give the newly trainable ones to the optimizer with their group LR."""
    model = unwrap(state.accelerator.unwrap_model(state.model))
    new = names - trainable(model)
    if not new:
        return
    set_trainable(model, new, True)
    if state.optimizer is None:
        return  # before the optimizer exists: it will be built with them
    optimizer = getattr(
        state.optimizer, "optimizer", state.optimizer
    )  # the torch optimizer inside accelerate's wrapper
    for group in param_groups(model, state.recipe.optim, only=new):
        optimizer.add_param_group(group)


def frozen_modules_to_eval(model: Any) -> None:
    """Batch-norm layers whose parameters are all frozen keep their running statistics (eval mode)."""
    for module in unwrap(model).modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()
