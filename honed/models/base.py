"""The model interface the loop sees, and ordered named layer groups.

A `Classifier` is an nn.Module whose forward takes the batch's input tensors and returns logits.
Its `layer_groups()` list (embeddings, block.0 .. block.N-1, neck, head) is what freezing and
per-group learning rates name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn


@dataclass
class LayerGroup:
    name: str
    params: list[str] = field(default_factory=list)


class Classifier(nn.Module):
    """Base class: subclasses set `preprocess` (tokenizer or (mean, std)) and `head_params`."""

    source: str = ""
    preprocess: Any = None
    head_params: set[str]
    meta: dict[str, Any]

    def layer_groups(self) -> list[LayerGroup]:
        return layer_groups(self, self.head_params)

    def save(self, folder: Path) -> None:
        raise NotImplementedError

    def write_meta(self, folder: Path) -> None:
        (folder / "honed.json").write_text(json.dumps({"source": self.source, **self.meta}, indent=1), encoding="utf-8")


def _block_container(model: nn.Module) -> str | None:
    """Name of the ModuleList/Sequential with the most parameterised children (the blocks)."""
    best, best_len = None, 1
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList | nn.Sequential):
            kids = [k for k in module.children() if any(True for _ in k.parameters())]
            if len(kids) > best_len and len(kids) == len(module):
                best, best_len = name, len(kids)
    return best


def layer_groups(model: nn.Module, head: set[str]) -> list[LayerGroup]:
    """Ordered groups: parameters before the blocks, one group per block, after them, the head."""
    container = _block_container(model)
    groups: dict[str, LayerGroup] = {}
    after_blocks = False
    for name, _ in model.named_parameters():
        if name in head:
            key = "head"
        elif container is not None and name.startswith(container + "."):
            key = f"block.{name[len(container) + 1 :].split('.')[0]}"
            after_blocks = True
        else:
            key = "neck" if after_blocks else "embeddings"
        groups.setdefault(key, LayerGroup(key)).params.append(name)
    order = ["embeddings", *(k for k in groups if k.startswith("block.")), "neck", "head"]
    return [groups[k] for k in order if k in groups]
