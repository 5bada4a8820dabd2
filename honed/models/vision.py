"""torchvision and timm image classifiers built from an architecture name plus a local weights file,
and their two model kinds."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from honed.assets import resolve_weights
from honed.data.labels import LabelMap
from honed.data.preprocess import TRAIN_IMAGE_STATS
from honed.errors import HonedError
from honed.models.base import Classifier, LayerGroup
from honed.models.kinds import (
    CHANNEL_PRUNING,
    IMAGE_FUSION_MEMBER,
    MODEL_KINDS,
    ROTATION,
    ModelKind,
    kind_named,
)
from honed.recipe import Recipe

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors or a torch file (weights_only: no code runs)."""
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any decode failure is the user's file
        raise HonedError(f"model.weights: cannot read '{path}': {str(exc).splitlines()[0]}") from exc
    return state.get("state_dict", state) if isinstance(state, dict) else state


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load every tensor or fail with a short summary (a full key list runs to thousands of characters)."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshaped = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or misshaped:
        found = (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", misshaped))
        parts = [
            f"{len(keys)} {what} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
            for what, keys in found
            if keys
        ]
        raise HonedError(f"model.weights: '{path}' does not fit this architecture: {'; '.join(parts)}")
    module.load_state_dict(state, strict=True)


def replace_last_linear(module: nn.Module, num_labels: int) -> str:
    """Swap the last nn.Linear for a fresh one with `num_labels` outputs; returns its name."""
    name = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)][-1]
    parent_name, _, attr = name.rpartition(".")
    parent = module.get_submodule(parent_name) if parent_name else module
    old = getattr(parent, attr)
    setattr(parent, attr, nn.Linear(old.in_features, num_labels))
    return name


class VisionClassifier(Classifier):
    """A torchvision or timm network taking `pixel_values`, with its fresh head's parameters known."""

    def __init__(
        self, net: nn.Module, source: str, name: str, head: str, stats: tuple[Any, Any], num_labels: int
    ) -> None:
        super().__init__()
        self.net = net
        self.kind = kind_named(source)
        self.preprocess = stats
        self.head_params = {f"net.{n}" for n, _ in net.named_parameters() if n.startswith(head + ".")}
        self.meta = {
            "kind": "image",
            "name": name,
            "num_labels": num_labels,
            "mean": list(stats[0]),
            "std": list(stats[1]),
        }

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values)


def timm_layer_groups(net: nn.Module, head: set[str], prefix: str = "net.") -> list[LayerGroup]:
    """timm's `group_matcher` groups as honed names: stem -> embeddings, the rest -> block.i, fresh head -> head.

    Fine groups (coarse=False: one per block, not per stage) are what timm's own layer-wise LR decay
    uses. timm folds final norms into the last block and puts unmatched layers (a neck conv, a head
    norm) in a last group, which therefore becomes the last block. `head` holds prefixed names.
    """
    from timm.models import group_parameters

    matcher = net.group_matcher(coarse=False)
    grouped = group_parameters(net, matcher)
    ordered = [
        kept for _, names in sorted(grouped.items()) if (kept := [prefix + n for n in names if prefix + n not in head])
    ]
    has_stem = bool(ordered) and _is_stem(matcher, ordered[0][0].removeprefix(prefix))
    groups = [LayerGroup("embeddings", ordered[0])] if has_stem else []
    groups += [LayerGroup(f"block.{i}", names) for i, names in enumerate(ordered[1:] if has_stem else ordered)]
    return [*groups, LayerGroup("head", [prefix + n for n, _ in net.named_parameters() if prefix + n in head])]


def _is_stem(matcher: Any, first: str) -> bool:
    """Whether timm's first group is the stem: a dict matcher names it; a callable one orders it first."""
    if not isinstance(matcher, dict):
        return True
    stem = matcher.get("stem")
    return isinstance(stem, str) and re.match(stem, first) is not None


def build_torchvision(name: str, weights: str | None, num_labels: int) -> tuple[nn.Module, str, tuple[Any, Any]]:
    import torchvision

    if name not in torchvision.models.list_models():
        raise HonedError(f"model.name: torchvision has no architecture '{name}'")
    net = torchvision.models.get_model(name, weights=None)
    if weights:
        path = resolve_weights(weights)
        _load_strict(net, read_state_dict(path), path)
    head = replace_last_linear(net, num_labels)
    return net, head, (IMAGENET_MEAN, IMAGENET_STD)


def build_timm(name: str, weights: str | None, num_labels: int) -> tuple[nn.Module, str, tuple[Any, Any]]:
    import timm

    if not timm.is_model(name):
        raise HonedError(f"model.name: timm has no architecture '{name}'")
    net = timm.create_model(name, pretrained=False)
    if weights:
        path = resolve_weights(weights)
        _load_strict(net, read_state_dict(path), path)
    net.reset_classifier(num_labels)
    head = next(n for n, m in net.named_modules() if m is net.get_classifier())
    cfg = net.pretrained_cfg or {}
    return net, head, (tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD)))


class VisionKind(ModelKind):
    """An image network from an architecture name + a local state dict; saved as safetensors + honed.json."""

    capabilities = frozenset({CHANNEL_PRUNING, TRAIN_IMAGE_STATS, ROTATION, IMAGE_FUSION_MEMBER})

    def backbone(self, name: str, weights: str | None, num_labels: int) -> tuple[nn.Module, str, tuple[Any, Any]]:
        """(network with a fresh `num_labels`-way last layer, that layer's module name, (mean, std))."""
        raise NotImplementedError

    def architecture(self, name: str) -> nn.Module:
        """The plain architecture, randomly initialised, with its default-size classifier."""
        raise NotImplementedError

    def build(self, recipe: Recipe, labels: LabelMap) -> Classifier:
        if recipe.data.kind != "image":
            raise HonedError(
                f"model.source={self.name} builds image models; set data.kind=image or use a Hugging Face text model"
            )
        net, head, stats = self.backbone(recipe.model.name, recipe.model.weights, len(labels))
        return VisionClassifier(net, self.name, recipe.model.name, head, stats, len(labels))

    def load(self, folder: Path, meta: dict[str, Any], labels: LabelMap) -> Classifier:
        net, head, _ = self.backbone(meta["name"], None, meta["num_labels"])
        net.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
        stats = (tuple(meta["mean"]), tuple(meta["std"]))
        return VisionClassifier(net, self.name, meta["name"], head, stats, meta["num_labels"])

    def save(self, model: Classifier, folder: Path) -> None:
        """safetensors weights + honed.json (architecture, label count, normalisation)."""
        save_file({k: v.contiguous() for k, v in model.net.state_dict().items()}, str(folder / "model.safetensors"))
        model.write_meta(folder)

    def dropout_regions(self, model: Classifier) -> Callable[[str], bool]:
        """The fresh head's container (MobileNet's `classifier`), head-named modules, timm's `drop_rate`."""
        head = min(model.head_params).rpartition(".")[0]  # e.g. net.classifier.1
        container = head.rpartition(".")[0]

        def test(name: str) -> bool:
            parts = name.split(".")[1:]
            return (
                (container not in ("", "net") and name.startswith(container + "."))
                or any(p.startswith(("head", "classifier")) for p in parts)
                or name == "net.drop_rate"
            )

        return test

    def set_image_stats(self, model: Classifier, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        """honed.json's mean/std too, so predict normalises the same way."""
        model.preprocess = (mean, std)
        model.meta.update(mean=list(mean), std=list(std))


@MODEL_KINDS.register("torchvision")
class TorchvisionKind(VisionKind):
    name = "torchvision"

    def backbone(self, name: str, weights: str | None, num_labels: int) -> tuple[nn.Module, str, tuple[Any, Any]]:
        return build_torchvision(name, weights, num_labels)

    def architecture(self, name: str) -> nn.Module:
        import torchvision

        return torchvision.models.get_model(name, weights=None)


@MODEL_KINDS.register("timm")
class TimmKind(VisionKind):
    name = "timm"

    def backbone(self, name: str, weights: str | None, num_labels: int) -> tuple[nn.Module, str, tuple[Any, Any]]:
        return build_timm(name, weights, num_labels)

    def architecture(self, name: str) -> nn.Module:
        import timm

        return timm.create_model(name, pretrained=False)

    def layer_groups(self, model: Classifier) -> list[LayerGroup]:
        """timm's own grouping where the model defines one; the generic heuristic otherwise."""
        if hasattr(model.net, "group_matcher"):
            return timm_layer_groups(model.net, model.head_params)
        return super().layer_groups(model)
