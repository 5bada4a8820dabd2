"""Hugging Face sequence and image classifiers, loaded offline-first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)

from honed.assets import install_hint, resolve_model_id
from honed.data.labels import LabelMap
from honed.errors import HonedError
from honed.models.base import Classifier


class HFClassifier(Classifier):
    source = "huggingface"

    def __init__(self, hf: Any, processor: Any, head_params: set[str], kind: str) -> None:
        super().__init__()
        self.hf = hf
        self.processor = processor
        self.preprocess = processor if kind == "text" else (tuple(processor.image_mean), tuple(processor.image_std))
        self.head_params = {f"hf.{n}" for n in head_params}
        self.meta = {"kind": kind}

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return self.hf(**inputs).logits

    def save(self, folder: Path) -> None:
        """`save_pretrained` layout, so `transformers.pipeline(..., model=folder)` loads it."""
        self.hf.save_pretrained(folder)
        self.processor.save_pretrained(folder)
        self.write_meta(folder)


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
        auto, path, name, num_labels=len(labels), id2label=labels.id2label(),
        label2id=labels.index, ignore_mismatched_sizes=True, output_loading_info=True,
    )
    fresh = set(info.get("missing_keys", [])) | {k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys", [])}
    processor = _from_pretrained(AutoTokenizer if kind == "text" else AutoImageProcessor, path, name)
    model = HFClassifier(hf, processor, fresh, kind)
    model.meta["name"] = name
    return model


def load_saved_huggingface(folder: Path, kind: str) -> HFClassifier:
    labels = LabelMap.load(folder)
    model = load_huggingface(str(folder), labels, kind)
    return model
