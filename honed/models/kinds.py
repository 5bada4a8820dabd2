"""Model kinds: one small object per family of pretrained models (Hugging Face, torchvision, timm, fusion, python).

A kind knows how to build a `Classifier` from a recipe's model spec, load one from a saved folder and
save it, where its dropout regions are, how its inputs are normalised and what it supports (which
pruning, recovery fine-tuning, pretraining objective). A built model carries its kind (`model.kind`),
so callers ask `model.kind.supports(FFN_PRUNING)` instead of comparing a source string. The saved
honed.json keeps the kind's name under "source", which `saved_kind` resolves.

Adding a kind = one module that defines a `ModelKind` subclass registered with
`@MODEL_KINDS.register("name")`, plus its module name in `KIND_MODULES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from honed.data.labels import LabelMap
from honed.errors import HonedError, did_you_mean
from honed.models.base import Classifier, LayerGroup, layer_groups
from honed.recipe import Recipe
from honed.registry import Registry

# honed.models.<module> for each module that registers kinds; imported before any lookup
KIND_MODULES = ("huggingface", "vision", "fusion", "python", "textrnn")

# Capabilities a kind may declare (`ModelKind.capabilities`); the code that needs one asks `supports`.
# One more lives where it is used, since data may not import models: honed.data.preprocess.TRAIN_IMAGE_STATS.
FFN_PRUNING = "ffn_pruning"  # prune --structured ffn: BERT-like FFN neurons removed, config kept true
CHANNEL_PRUNING = "channel_pruning"  # prune --structured channels: whole conv output channels zeroed
RECOVERY_FINETUNE = "recovery_finetune"  # prune --recover-epochs: fine-tune the pruned model again
KEEP_LAYERS = "keep_layers"  # model.keep_layers: a shallower copy of the encoder
MASKED_LM = "masked_lm_pretraining"  # honed pretrain on text
ROTATION = "rotation_pretraining"  # honed pretrain on images
TEXT_FUSION_MEMBER = "text_fusion_member"  # a member of a data.kind=text fusion (its encoder, mean-pooled)
IMAGE_FUSION_MEMBER = "image_fusion_member"  # a member of a data.kind=image fusion (its pooled features)


class ModelKind:
    """What honed needs to know about one family of models. Stateless: one instance per model is fine."""

    name: ClassVar[str] = ""
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities

    def build(self, recipe: Recipe, labels: LabelMap) -> Classifier:
        """The pretrained backbone named by `recipe.model` with a fresh head for `labels`."""
        raise NotImplementedError

    def load(self, folder: Path, meta: dict[str, Any], labels: LabelMap) -> Classifier:
        """A model this kind saved in `folder` (`meta`: its honed.json)."""
        raise NotImplementedError

    def save(self, model: Classifier, folder: Path) -> None:
        """The model's weights in its ecosystem's layout plus honed.json (`model.write_meta`)."""
        raise NotImplementedError

    def layer_groups(self, model: Classifier) -> list[LayerGroup]:
        """Ordered named groups for freezing and per-group learning rates; the generic heuristic by default."""
        return layer_groups(model, model.head_params)

    def dropout_regions(self, model: Classifier) -> Callable[[str], bool]:
        """A test of a dropout site's name: True where the site belongs to the classifier head."""
        raise HonedError(f"model.dropout: not supported for {self.name} models; leave model.dropout unset")

    def normalisation(self, model: Classifier) -> Any:
        """What the data pipeline prepares inputs with: a tokenizer, or image (mean, std)."""
        return model.preprocess

    def set_image_stats(self, model: Classifier, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        """Normalise with these statistics from now on and record them where the saved model keeps them
        (kinds with TRAIN_IMAGE_STATS)."""
        raise NotImplementedError


MODEL_KINDS: Registry[ModelKind] = Registry("model kind")


def _load_kinds() -> None:
    """Import every kind module so each registers itself (importing twice is free)."""
    for module in KIND_MODULES:
        importlib.import_module(f"honed.models.{module}")


def kind_named(name: str, field: str = "model.source") -> ModelKind:
    """The registered kind called `name` (no `module:attr` import: a kind name is never code to run)."""
    _load_kinds()
    if name not in MODEL_KINDS:
        raise HonedError(f"{field}: unknown model kind '{name}'{did_you_mean(name, MODEL_KINDS.names())}")
    return MODEL_KINDS.get(name)()


def spec_source(spec: Any) -> str:
    """The kind name a model spec asks for: 'fusion' when it lists fusion members; for 'auto',
    torchvision/timm when a weights file is named (torchvision if it knows the architecture), else Hugging Face."""
    if getattr(spec, "fusion", None) is not None:
        return "fusion"
    if spec.source != "auto":
        return spec.source
    if spec.weights is None:
        return "huggingface"
    import torchvision

    return "torchvision" if spec.name in torchvision.models.list_models() else "timm"


def spec_kind(spec: Any, field: str = "model.source") -> ModelKind:
    """The kind that builds a model spec (`recipe.model` or a fusion member)."""
    return kind_named(spec_source(spec), field)


def saved_kind(folder: Path, meta: dict[str, Any]) -> ModelKind:
    """The kind that saved `folder`, from honed.json's "source"; an unknown one is one line naming the folder."""
    _load_kinds()
    source = meta.get("source") if isinstance(meta, dict) else None
    if not isinstance(source, str) or source not in MODEL_KINDS:
        raise HonedError(
            f"model '{folder}': honed.json names model source {source!r}, which this honed cannot load "
            f"(known: {', '.join(MODEL_KINDS.names())}); save it again with this version of honed"
        )
    return MODEL_KINDS.get(source)()
