"""Build, save and load a classifier through its model kind (honed/models/kinds.py)."""

from __future__ import annotations

import json
from pathlib import Path

from honed.data.labels import LabelMap
from honed.errors import HonedError
from honed.models.base import Classifier
from honed.models.dropout import apply_dropout
from honed.models.kinds import saved_kind, spec_kind
from honed.models.shrink import keep_layers
from honed.recipe import Recipe


def build_model(recipe: Recipe, labels: LabelMap) -> Classifier:
    """The pretrained backbone with a fresh head for `labels`, with any `model.dropout` rates applied."""
    model = spec_kind(recipe.model).build(recipe, labels)
    if recipe.model.keep_layers is not None:
        keep_layers(model, recipe.model.keep_layers)
    if any(rate is not None for rate in recipe.model.dropout.model_dump().values()):
        apply_dropout(model, recipe.model.dropout)
    return model


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
    kind = saved_kind(folder, meta)
    labels = LabelMap.load(folder)
    return kind.load(folder, meta, labels), labels
