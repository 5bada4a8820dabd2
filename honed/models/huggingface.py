"""Hugging Face sequence and image classifiers, loaded offline-first, and their model kind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)
from transformers.utils import logging as hf_logging

from honed.assets import install_hint, resolve_model_id
from honed.data.labels import LabelMap
from honed.data.preprocess import TRAIN_IMAGE_STATS
from honed.errors import HonedError
from honed.models.base import Classifier
from honed.models.kinds import (
    FFN_PRUNING,
    KEEP_LAYERS,
    MASKED_LM,
    MODEL_KINDS,
    RECOVERY_FINETUNE,
    TEXT_FUSION_MEMBER,
    ModelKind,
)
from honed.recipe import Recipe

hf_logging.set_verbosity_error()  # loading a checkpoint with a fresh head is the normal case here, not a warning
hf_logging.disable_progress_bar()


class HFClassifier(Classifier):
    def __init__(self, hf: Any, processor: Any, head_params: set[str], kind: str) -> None:
        super().__init__()
        self.kind = HuggingFaceKind()
        self.hf = hf
        self.processor = processor
        self.preprocess = processor if kind == "text" else (tuple(processor.image_mean), tuple(processor.image_std))
        self.head_params = {f"hf.{n}" for n in head_params}
        self.meta = {"kind": kind}

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return self.hf(**inputs).logits


def _from_pretrained(loader: Any, path: str, name: str, **kwargs: Any) -> Any:
    """Local files first (folder, shipping package, cache); the hub only if that fails."""
    try:
        return loader.from_pretrained(path, local_files_only=True, **kwargs)
    except (OSError, ValueError):
        pass
    try:
        return loader.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise HonedError(
            f"model.name: cannot load '{name}': not a local folder, an installed offline model or a cached hub model"
            f"{install_hint(name)}"
        ) from exc


def load_huggingface(name: str, labels: LabelMap, kind: str) -> HFClassifier:
    path = resolve_model_id(name)
    auto = AutoModelForSequenceClassification if kind == "text" else AutoModelForImageClassification
    hf, info = _from_pretrained(
        auto,
        path,
        name,
        num_labels=len(labels),
        id2label=labels.id2label(),
        label2id=labels.index,
        ignore_mismatched_sizes=True,
        output_loading_info=True,
    )
    mismatched = {k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys", [])}
    fresh = set(info.get("missing_keys", [])) | mismatched
    processor = _from_pretrained(AutoTokenizer if kind == "text" else AutoImageProcessor, path, name)
    model = HFClassifier(hf, processor, fresh, kind)
    model.meta["name"] = name
    return model


def load_saved_huggingface(folder: Path, kind: str) -> HFClassifier:
    labels = LabelMap.load(folder)
    model = load_huggingface(str(folder), labels, kind)
    return model


@MODEL_KINDS.register("huggingface")
class HuggingFaceKind(ModelKind):
    """Transformers sequence/image classifiers: `from_pretrained` by id or folder, `save_pretrained` layout."""

    name = "huggingface"
    capabilities = frozenset(
        {FFN_PRUNING, RECOVERY_FINETUNE, KEEP_LAYERS, TRAIN_IMAGE_STATS, MASKED_LM, TEXT_FUSION_MEMBER}
    )

    def build(self, recipe: Recipe, labels: LabelMap) -> Classifier:
        if recipe.model.weights:
            raise HonedError(
                "model.weights: Hugging Face models load from model.name (an id or folder); drop model.weights"
            )
        return load_huggingface(recipe.model.name, labels, recipe.data.kind)

    def load(self, folder: Path, meta: dict[str, Any], labels: LabelMap) -> Classifier:
        return load_huggingface(str(folder), labels, meta["kind"])

    def save(self, model: Classifier, folder: Path) -> None:
        """`save_pretrained` layout, so `transformers.pipeline(..., model=folder)` loads it."""
        model.hf.save_pretrained(folder)
        model.processor.save_pretrained(folder)
        model.write_meta(folder)

    def dropout_regions(self, model: Classifier) -> Callable[[str], bool]:
        """Outside the base model (BERT's `hf.dropout`, RoBERTa's `hf.classifier.dropout`) is the head."""
        body = f"hf.{model.hf.base_model_prefix}."
        return lambda name: name.startswith("hf.") and not name.startswith(body)

    def set_image_stats(self, model: Classifier, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        """The image processor's statistics too, so preprocessor_config.json carries them."""
        model.preprocess = (mean, std)
        if hasattr(model.processor, "image_mean"):
            model.processor.image_mean, model.processor.image_std = list(mean), list(std)
