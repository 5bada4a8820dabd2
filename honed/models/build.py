"""Build, save and load a classifier through its model kind (honed/models/kinds.py)."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError, safe_open
from torch import nn

from honed.data.labels import LabelMap
from honed.errors import HonedError
from honed.models.base import Classifier
from honed.models.dropout import apply_dropout
from honed.models.kinds import saved_kind, spec_kind
from honed.models.python import build_python
from honed.models.shrink import keep_layers
from honed.recipe import Recipe


def build_model(recipe: Recipe, labels: LabelMap, live: nn.Module | None = None) -> Classifier:
    """The pretrained backbone with a fresh head for `labels`, with any `model.dropout` rates applied.

    `live`: a user's nn.Module passed in Python (`honed.fit(recipe, model=module)`); honed trains a copy."""
    model = build_python(recipe, labels, live) if live is not None else spec_kind(recipe.model).build(recipe, labels)
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
    meta, names = _read_json(meta_path), _read_json(folder / "labels.json")
    if not isinstance(meta, dict) or not isinstance(names, list):
        raise HonedError(
            f"model '{folder}': honed.json or labels.json does not hold what honed wrote; retrain or restore the folder"
        )
    kind = saved_kind(folder, meta)
    labels = LabelMap.load(folder)
    try:
        return kind.load(folder, meta, labels), labels
    except (OSError, RuntimeError, ValueError, EOFError, SafetensorError) as exc:  # truncated or overwritten weights
        raise HonedError(
            f"model '{folder}': {_damaged_weights(folder)} is damaged or truncated "
            f"({_first_line(exc)}); retrain the model or restore the file"
        ) from exc


def _read_json(path: Path) -> object:
    """A small JSON file of a saved model; a damaged one is one line naming it."""
    if not path.is_file():
        raise HonedError(f"model '{path.parent}': {path.name} is missing; is it a model folder saved by honed?")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HonedError(
            f"model '{path.parent}': {path.name} is damaged ({_first_line(exc)}); retrain or restore it"
        ) from exc


def _damaged_weights(folder: Path) -> str:
    """The first weights file in `folder` whose safetensors header does not read back, else the folder's weights."""
    for path in sorted(folder.rglob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as handle:
                names = handle.keys()  # a safe_open handle is not a dict: keys() is its only listing
                for key in names:
                    handle.get_slice(key)
        except Exception:  # noqa: BLE001 -- any failure to read it back names this file
            return f"weights file '{path}'"
    return "its weights file"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__
