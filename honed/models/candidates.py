"""The climb's model-stage candidates (see honed/proposals.py): the other backbones the user listed, a
shallower copy of a text transformer, and for text classification a TF-IDF + logistic-regression model.
Also what a proposer may ask about a recipe's model without loading its weights: its config and how
many blocks (transformer layers, CNN blocks) it has.
"""

from __future__ import annotations

from typing import Any

import torch

from honed.assets import resolve_model_id
from honed.errors import HonedError
from honed.models.kinds import KEEP_LAYERS, kind_named, spec_source
from honed.proposals import Change, Situation, proposes


def hf_config(name: str) -> Any | None:
    """The Hugging Face config of model `name` from local files only (a folder, a shipping package or the
    cache); None when there is none, so proposing never reaches for the hub."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(resolve_model_id(name), local_files_only=True)
    except (OSError, ValueError):
        return None


def block_count(recipe: Any) -> int | None:
    """How many `block.N` layer groups the recipe's model has (what `freeze.all_but_last` counts), read
    without loading weights: a Hugging Face config's layer count after `model.keep_layers`, or a vision
    architecture built on the meta device; None when that cannot be told (fusion, python models)."""
    spec = recipe.model
    try:
        source = spec_source(spec)
        if source == "huggingface":
            config = hf_config(spec.name)
            layers = getattr(config, "num_hidden_layers", None)
            if spec.keep_layers is not None and layers:
                return spec.keep_layers if isinstance(spec.keep_layers, int) else len(spec.keep_layers)
            return layers
        if source in ("torchvision", "timm") and recipe.data.kind == "image":
            from honed.models.vision import VisionClassifier

            with torch.device("meta"):  # the architecture only: no memory, no weights file read
                net, head, stats = kind_named(source).backbone(spec.name, None, 2)
            model = VisionClassifier(net, source, spec.name, head, stats, 2)
            return sum(g.name.startswith("block.") for g in model.layer_groups())
    except (HonedError, RuntimeError, ValueError, TypeError, ImportError):
        return None
    return None


def _size(name: str) -> float | None:
    """A transformer's compute per token, roughly: layers x hidden width squared."""
    config = hf_config(name)
    layers, hidden = getattr(config, "num_hidden_layers", None), getattr(config, "hidden_size", None)
    return float(layers * hidden**2) if layers and hidden else None


def _section(backbone: str | dict[str, Any]) -> dict[str, Any]:
    """A listed backbone as a model section: a name as users write it, or a section (e.g. with weights)."""
    return {"name": backbone} if isinstance(backbone, str) else dict(backbone)


def _backbones(s: Situation) -> list[Change]:
    """Each listed backbone as a fresh model section (keeping the dropout rates)."""
    spec = s.recipe.model
    if spec.fusion is not None:
        return []
    here = _size(spec.name) if s.kind == "text" else None
    # a name and the local folder it resolves to are one model; the same model with other weights is another
    out, seen = [], {(resolve_model_id(spec.name), spec.weights)}
    for section in map(_section, s.backbones):
        name, weights = str(section.get("name", "")), section.get("weights")
        key = (resolve_model_id(name), weights)
        if key in seen:
            continue
        twin = any(known == key[0] for known, _ in seen)  # the same model with other weights: named by them
        seen.add(key)
        there = _size(name) if here else None
        cost = round(max(0.1, there / here), 1) if here and there else 1.0
        label = f"backbone {name}" + (f" (weights {weights})" if twin else "")
        out.append(Change(label, {"model": {"dropout": spec.dropout.model_dump(), **section}},
                          group="backbone", why="another pretrained model: the backbone is often the largest lever",
                          cost=cost))
    return out


def _shallower(s: Situation) -> list[Change]:
    """Half the layers of a Hugging Face text transformer (DistilBERT-style: every other layer kept)."""
    spec = s.recipe.model
    if s.kind != "text" or spec.keep_layers is not None or spec.fusion is not None:
        return []
    try:
        kind = kind_named(spec_source(spec))
    except HonedError:
        return []
    layers = block_count(s.recipe) if kind.supports(KEEP_LAYERS) else None
    if not layers or layers < 2:
        return []
    keep = layers // 2
    return [Change(f"model.keep_layers {keep} of {layers}", {"model.keep_layers": keep}, group="depth",
                   why="a shallower copy trains and predicts about twice as fast and may generalise as well",
                   cost=round(keep / layers, 2))]


@proposes("model")
def _climb_candidates(s: Situation) -> list[Change]:
    out = [*_backbones(s), *_shallower(s)]
    if s.kind == "text" and s.task == "classification":
        out.append(Change("tfidf + logistic regression", runner="classical", group="classical", cost=0.05,
                          why="a classical baseline on word n-grams: sometimes close, at a tiny fraction of the cost"))
    return out
