"""Structured pruning: whole FFN neurons of BERT-like transformers (physically removed) and whole
output channels of CNN convolutions (zeroed with prune.ln_structured).

FFN neurons: the same number is removed from every layer (the rows of `intermediate.dense` with the
smallest L2 norm and the matching columns of `output.dense`), so the config's single
`intermediate_size` stays true and the smaller model saves and reloads with `save_pretrained`.
Attention heads: transformers 5 dropped `prune_heads`; asking for it is an error that says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from honed.errors import HonedError
from honed.models.kinds import CHANNEL_PRUNING, FFN_PRUNING

STRUCTURES = ("ffn", "channels", "heads")


def _ffn_pairs(model: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    """(intermediate, output) module pairs of each transformer layer (BERT naming)."""
    pairs = []
    for module in model.modules():
        inter, out = getattr(module, "intermediate", None), getattr(module, "output", None)
        if isinstance(getattr(inter, "dense", None), nn.Linear) and isinstance(getattr(out, "dense", None), nn.Linear):
            pairs.append((inter, out))
    return pairs


@torch.no_grad()
def _keep_rows(linear: nn.Linear, keep: torch.Tensor, dim: int) -> nn.Linear:
    """A new Linear with only the `keep` outputs (dim 0) or inputs (dim 1)."""
    weight = linear.weight.index_select(dim, keep)
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=linear.bias is not None).to(weight.device, weight.dtype)
    new.weight.copy_(weight)
    if linear.bias is not None:
        new.bias.copy_(linear.bias.index_select(0, keep) if dim == 0 else linear.bias)
    return new


def prune_ffn(model: Any, fraction: float) -> dict[str, Any]:
    """Remove `fraction` of the FFN neurons of every layer (smallest L2 norm of intermediate.dense rows)."""
    pairs = _ffn_pairs(model)
    if not pairs or not model.kind.supports(FFN_PRUNING):
        raise HonedError(
            f"--structured ffn: the model ({model.kind.name}) has no BERT-like "
            "FFN layers (intermediate.dense/output.dense); use --structured channels for CNNs or unstructured pruning"
        )
    size = pairs[0][0].dense.out_features
    kept = size - round(fraction * size)
    if kept < 1:
        raise HonedError(f"--sparsity {fraction}: would remove every FFN neuron; use a smaller fraction")
    for inter, out in pairs:
        keep = inter.dense.weight.norm(dim=1).topk(kept).indices.sort().values
        inter.dense = _keep_rows(inter.dense, keep, 0)
        out.dense = _keep_rows(out.dense, keep, 1)
    model.hf.config.intermediate_size = kept  # every layer keeps the same count, so the config stays true
    return {
        "structure": "ffn",
        "removed": "physically",
        "intermediate_size": {"before": size, "after": kept},
        "layers": len(pairs),
    }


@torch.no_grad()
def prune_channels(model: Any, fraction: float) -> dict[str, Any]:
    """Zero `fraction` of each convolution's output channels (smallest L2 norm), via prune.ln_structured."""
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.out_channels > 1]
    if not convs or not model.kind.supports(CHANNEL_PRUNING):
        raise HonedError(
            "--structured channels: the model has no convolutions; use --structured ffn for BERT-like "
            "transformers or unstructured pruning"
        )
    for _, conv in convs:
        prune.ln_structured(conv, "weight", amount=fraction, n=2, dim=0)
        prune.remove(conv, "weight")
    return {"structure": "channels", "removed": "zeroed (tensors keep their shape)", "layers": len(convs)}


def prune_heads(model: Any, fraction: float) -> dict[str, Any]:
    if not hasattr(getattr(model, "hf", None), "prune_heads"):
        raise HonedError(
            "--structured heads: the installed transformers has no prune_heads for this model; "
            "use --structured ffn or unstructured pruning"
        )
    raise HonedError("--structured heads: not implemented in honed yet; use --structured ffn")


STRUCTURED: dict[str, Callable[[Any, float], dict[str, Any]]] = {
    "ffn": prune_ffn,
    "channels": prune_channels,
    "heads": prune_heads,
}
