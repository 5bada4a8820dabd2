"""A shallower copy of a pretrained transformer: keep some of its layers (DistilBERT-style student
initialisation: a student with every other teacher layer starts far better than a random one).

`model.keep_layers: 3` keeps 3 evenly spaced layers (always the last one); `model.keep_layers:
[0, 2, 4]` keeps exactly those. The encoder's layer list is cut and the config's layer count set,
so the model saves and reloads (save_pretrained) as an ordinary smaller model.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from honed.errors import HonedError
from honed.models.kinds import KEEP_LAYERS

FIELD = "model.keep_layers"


def chosen_layers(keep: int | list[int], total: int) -> list[int]:
    """Layer indices to keep: a list as given (checked), or `keep` evenly spaced ending at the last layer."""
    if isinstance(keep, int):
        if not 1 <= keep <= total:
            raise HonedError(f"{FIELD}: {keep} layers asked but the model has {total}; use 1..{total}")
        step = total / keep
        return sorted({total - 1 - int(i * step) for i in range(keep)})
    bad = [i for i in keep if not 0 <= i < total]
    if not keep or bad or len(set(keep)) != len(keep):
        raise HonedError(
            f"{FIELD}: {keep} must be distinct layer indices in 0..{total - 1} (the model has {total} layers)"
        )
    return sorted(keep)


def encoder_layers(hf: Any) -> nn.ModuleList:
    """The transformer's list of layers: the ModuleList whose length is config.num_hidden_layers."""
    total = getattr(hf.config, "num_hidden_layers", None)
    for _, module in hf.named_modules():
        if isinstance(module, nn.ModuleList) and total and len(module) == total:
            return module
    raise HonedError(f"{FIELD}: cannot find the layer list of this model ({type(hf).__name__})")


def keep_layers(model: Any, keep: int | list[int]) -> list[int]:
    """Cut a Hugging Face classifier's encoder down to the chosen layers, in place; returns them."""
    if not model.kind.supports(KEEP_LAYERS):
        raise HonedError(f"{FIELD}: works on Hugging Face transformer models only (this is a {model.kind.name} model)")
    hf = model.hf
    layers = encoder_layers(hf)
    kept = chosen_layers(keep, len(layers))
    for new, old in enumerate(kept):
        attention = getattr(layers[old], "attention", None)
        inner = getattr(attention, "self", attention)
        if hasattr(inner, "layer_idx"):  # caches index layers by position
            inner.layer_idx = new
    layers_list = [layers[i] for i in kept]
    while len(layers):
        del layers[0]
    layers.extend(layers_list)
    hf.config.num_hidden_layers = len(kept)
    model.meta["kept_layers"] = kept
    return kept
