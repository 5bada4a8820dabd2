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
    depth: int | None = None  # levels below the head (head 0); None: the group's position from the end of the list


def depth_levels(groups: list[LayerGroup]) -> list[list[LayerGroup]]:
    """The groups top-down, one level per depth: groups of side-by-side backbones (fusion members) at the
    same height share a level; groups without a depth are one level each, by list position."""
    levels: dict[int, list[LayerGroup]] = {}
    for i, group in enumerate(groups):
        levels.setdefault(group.depth if group.depth is not None else len(groups) - 1 - i, []).append(group)
    return [levels[d] for d in sorted(levels)]


class Classifier(nn.Module):
    """Base class: subclasses set `kind`, `preprocess` (tokenizer or (mean, std)) and `head_params`.

    `kind` is the model's `honed.models.kinds.ModelKind`: callers ask it what the model supports. It is
    None only for internal modules that are never saved (the feature cache's head)."""

    kind: Any = None
    preprocess: Any = None
    head_params: set[str]
    meta: dict[str, Any]
    notes: list[str] | tuple[str, ...] = ()  # what building decided (e.g. which layer became the head), logged by fit

    def layer_groups(self) -> list[LayerGroup]:
        """Its kind's groups (timm's own grouping, fusion's per member); the generic heuristic without a kind."""
        return self.kind.layer_groups(self) if self.kind is not None else layer_groups(self, self.head_params)

    def save(self, folder: Path) -> None:
        self.kind.save(self, folder)

    def write_meta(self, folder: Path) -> None:
        """honed.json: the kind's name under "source" (what loading resolves) and the kind's own metadata."""
        meta = {"source": self.kind.name, **self.meta}
        (folder / "honed.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")


def _blocks(model: nn.Module) -> list[str]:
    """Module names of the blocks: the children of the sibling ModuleList/Sequential containers
    (e.g. BERT's encoder.layer, MobileNet's features, ResNet's layer1..layer4) under the one parent
    that holds the most of them."""
    best: list[str] = []
    for parent_name, parent in model.named_modules():
        blocks = []
        for child_name, child in parent.named_children():
            kids = list(child.named_children()) if isinstance(child, nn.ModuleList | nn.Sequential) else []
            if kids and all(any(True for _ in k.parameters()) for _, k in kids):
                prefix = f"{parent_name}.{child_name}" if parent_name else child_name
                blocks += [f"{prefix}.{kid_name}" for kid_name, _ in kids]
        if len(blocks) > len(best):
            best = blocks
    return best if len(best) > 1 else []


def layer_groups(model: nn.Module, head: set[str]) -> list[LayerGroup]:
    """Ordered groups: parameters before the blocks, one group per block, after them, the head."""
    block_of = {name: i for i, name in enumerate(_blocks(model))}
    groups: dict[str, LayerGroup] = {}
    after_blocks = False
    for name, _ in model.named_parameters():
        owner = next((name[:i] for i in range(len(name)) if name[i] == "." and name[:i] in block_of), None)
        if name in head:
            key = "head"
        elif owner is not None:
            key = f"block.{block_of[owner]}"
            after_blocks = True
        else:
            key = "neck" if after_blocks else "embeddings"
        groups.setdefault(key, LayerGroup(key)).params.append(name)
    blocks = sorted((k for k in groups if k.startswith("block.")), key=lambda k: int(k[6:]))
    order = ["embeddings", *blocks, "neck", "head"]
    return [groups[k] for k in order if k in groups]
