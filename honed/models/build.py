"""Pick the model source (Hugging Face, torchvision, timm) and load or rebuild a classifier."""

from __future__ import annotations

import json
from pathlib import Path

from honed.data.labels import LabelMap
from honed.errors import HonedError
from honed.models.base import Classifier
from honed.models.dropout import apply_dropout
from honed.models.fusion import build_fusion, load_fusion, member_source
from honed.models.shrink import keep_layers
from honed.models.huggingface import load_huggingface
from honed.models.vision import BUILDERS, VisionClassifier, load_saved_vision
from honed.recipe import Recipe


def infer_source(recipe: Recipe) -> str:
    """'auto' means torchvision/timm when a weights file is named, else Hugging Face."""
    return member_source(recipe.model)


def build_model(recipe: Recipe, labels: LabelMap) -> Classifier:
    """The pretrained backbone with a fresh head for `labels`, with any `model.dropout` rates applied."""
    model = _load_pretrained(recipe, labels)
    if recipe.model.keep_layers is not None:
        keep_layers(model, recipe.model.keep_layers)
    if any(rate is not None for rate in recipe.model.dropout.model_dump().values()):
        apply_dropout(model, recipe.model.dropout)
    return model


def _load_pretrained(recipe: Recipe, labels: LabelMap) -> Classifier:
    if recipe.model.fusion is not None:
        return build_fusion(recipe, len(labels))
    source = infer_source(recipe)
    if source == "huggingface":
        if recipe.model.weights:
            raise HonedError("model.weights: Hugging Face models load from model.name (an id or folder); drop model.weights")
        return load_huggingface(recipe.model.name, labels, recipe.data.kind)
    if recipe.data.kind != "image":
        raise HonedError(f"model.source={source} builds image models; set data.kind=image or use a Hugging Face text model")
    net, head, stats = BUILDERS[source](recipe.model.name, recipe.model.weights, len(labels))
    return VisionClassifier(net, source, recipe.model.name, head, stats, len(labels))


def save_model(model: Classifier, labels: LabelMap, folder: Path, recipe_yaml: str) -> None:
    """The final model in its ecosystem's layout plus labels.json and the recipe that made it."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder)
    labels.save(folder)
    (folder / "recipe.yaml").write_text(recipe_yaml, encoding="utf-8")


def load_model(folder: str | Path) -> tuple[Classifier, LabelMap]:
    """A model saved by honed (`save_model`), ready for evaluate/predict."""
    folder = Path(folder)
    meta_path = folder / "honed.json"
    if not meta_path.is_file():
        raise HonedError(f"model '{folder}': not a model folder saved by honed (no honed.json); use RUN_DIR/model")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    labels = LabelMap.load(folder)
    if meta["source"] == "huggingface":
        return load_huggingface(str(folder), labels, meta["kind"]), labels
    if meta["source"] == "fusion":
        return load_fusion(folder, meta), labels
    return load_saved_vision(folder, meta), labels
