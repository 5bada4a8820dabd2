"""Use a saved model: predict labelled or unlabelled data, evaluate labelled data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch
from accelerate import Accelerator

from honed.assets import resolve_data_path
from honed.data.build import check_augment, keep_labels, make_collate, make_dataset
from honed.data.images import check_images
from honed.data.labels import LabelMap
from honed.data.loaders import eval_loader
from honed.data.preprocess import normalise_texts
from honed.data.sources import IMAGE_SUFFIXES, load_source, slice_columns
from honed.data.tables import read_table, require_columns
from honed.errors import HonedError
from honed.evaluate.calibration import load_temperature
from honed.metrics import classification_metrics
from honed.models.base import Classifier
from honed.models.build import load_model
from honed.recipe import Recipe, TransformSpec, load_recipe
from honed.models.forward import predict_logits


def saved_recipe(model_dir: Path, overrides: dict[str, Any] | None = None) -> Recipe:
    path = model_dir / "recipe.yaml"
    if not path.is_file():
        raise HonedError(f"model '{model_dir}': no recipe.yaml beside the model; use RUN_DIR/model")
    return load_recipe(path, overrides)


def unlabelled_frame(source: Any, recipe: Recipe) -> pd.DataFrame:
    """Inputs without labels: a table file, an image folder, a DataFrame or a list of texts/paths."""
    if isinstance(source, list):
        return pd.DataFrame({"x": pd.Series(source, dtype=object)})
    base = Path(".")
    if isinstance(source, pd.DataFrame):
        frame = source.reset_index(drop=True)
    else:
        path = resolve_data_path(str(source), "input")
        if path.is_dir():
            files = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise HonedError(f"input: folder '{path}' holds no images")
            return pd.DataFrame({"x": files})
        frame, base = read_table(path, "input"), path.parent
    spec = recipe.data
    column = spec.text_column if spec.kind == "text" else spec.path_column
    require_columns(frame, {f"data.{'text' if spec.kind == 'text' else 'path'}_column": column,
                            "data.text_pair_column": spec.text_pair_column}, str(source) if not isinstance(source, pd.DataFrame) else "input")
    if spec.kind == "image":
        return pd.DataFrame({"x": frame[column].astype(str).map(lambda p: str((base / p).resolve()))})
    out = pd.DataFrame({"x": frame[column].fillna("").astype(str)})
    if spec.text_pair_column:
        out["x2"] = frame[spec.text_pair_column].fillna("").astype(str)
    return out


def logits_for(model: Classifier, labels: LabelMap, recipe: Recipe, frame: pd.DataFrame) -> torch.Tensor:
    """Logits for every row of a standard frame (labels, when present, are checked by the caller).

    With `augment.tta` = K > 0 the result is the log of the mean softmax probabilities of the plain
    view and K augmented views, so softmax(logits) is that mean (test-time augmentation)."""
    acc = Accelerator(cpu=recipe.train.cpu)
    if recipe.data.kind == "image":
        check_images(frame["x"], "input")
    model = acc.prepare(model)
    plain = _view_logits(model, labels, recipe, frame, acc, train=False)
    views = recipe.augment.tta
    if not views:
        return plain
    check_augment(recipe, acc.unwrap_model(model).preprocess)
    augmented = tta_recipe(recipe)
    probs = torch.softmax(plain.float(), dim=-1)
    with torch.random.fork_rng(devices=[]):  # the same views every call; the caller's RNG is left as it was
        torch.manual_seed(0)
        for _ in range(views):
            probs += torch.softmax(_view_logits(model, labels, augmented, frame, acc, train=True).float(), dim=-1)
    return torch.log((probs / (views + 1)).clamp_min(torch.finfo(torch.float32).tiny))


def tta_recipe(recipe: Recipe) -> Recipe:
    """The recipe whose training augmentation makes the TTA views: its own, or a horizontal flip for
    images when none is configured."""
    if recipe.data.kind == "image" and not recipe.augment.image:
        flip = recipe.augment.model_copy(update={"image": [TransformSpec(name="flip", p=0.5)]})
        return recipe.model_copy(update={"augment": flip})
    return recipe


def _view_logits(model: Any, labels: LabelMap, recipe: Recipe, frame: pd.DataFrame, acc: Accelerator, train: bool) -> torch.Tensor:
    """Logits of one pass over the frame, augmented as in training when `train`."""
    preprocess = acc.unwrap_model(model).preprocess
    dataset = make_dataset(frame, labels, recipe, preprocess, train=train)
    loader = acc.prepare(eval_loader(dataset, recipe.train.eval_batch_size, make_collate(recipe, preprocess, train=train), 0))
    logits, _ = predict_logits(model, loader, acc)
    return logits


def model_inputs(frame: pd.DataFrame, recipe: Recipe) -> pd.DataFrame:
    """The text normalisation the model was trained with (`data.preprocess`, from the saved recipe)."""
    return normalise_texts(frame, recipe.data.preprocess) if recipe.data.kind == "text" else frame


def predict_frame(model_dir: str | Path, source: Any, overrides: dict[str, Any] | None = None, calibrated: bool = False) -> pd.DataFrame:
    """Predicted label and per-class probabilities for every row of `source`; `overrides` go to the
    saved recipe (e.g. {"augment.tta": 4}); `calibrated` divides the logits by the temperature saved
    with the model (model/calibration.json)."""
    model_dir = Path(model_dir)
    if _ensemble(model_dir, calibrated):  # an ensemble folder (honed/ensemble/saved.py) predicts like one model
        from honed.ensemble.saved import ensemble_predict_frame

        return ensemble_predict_frame(model_dir, source, overrides)
    temperature = load_temperature(model_dir) if calibrated else 1.0
    model, labels = load_model(model_dir)
    recipe = saved_recipe(model_dir, overrides)
    frame = unlabelled_frame(source, recipe)
    probs = torch.softmax(logits_for(model, labels, recipe, model_inputs(frame, recipe)) / temperature, dim=-1).numpy()
    out = pd.DataFrame({"input": frame["x"].map(lambda v: v if isinstance(v, str) else "<array>")})
    out["predicted"] = [labels.names[i] for i in probs.argmax(axis=1)]
    for i, name in enumerate(labels.names):
        out[f"prob_{name}"] = probs[:, i]
    return out


def evaluate_saved(model_dir: str | Path, source: Any, overrides: dict[str, Any] | None = None, calibrated: bool = False,
                   report_dir: str | Path | None = None) -> dict[str, float]:
    """Loss, accuracy and macro-F1 of a saved model on labelled data; `calibrated` applies the saved
    temperature (the loss changes, the predictions do not); `report_dir` also writes report.json/.html there."""
    model_dir = Path(model_dir)
    if _ensemble(model_dir, calibrated):
        from honed.ensemble.saved import ensemble_evaluate

        return ensemble_evaluate(model_dir, source, overrides, report_dir)
    temperature = load_temperature(model_dir) if calibrated else 1.0
    model, labels = load_model(model_dir)
    recipe = saved_recipe(model_dir, overrides)
    keep = slice_columns(recipe) if report_dir is not None else ()
    frame = keep_labels(load_source(source, recipe.data, "data", keep=keep), recipe.data.labels, "data")
    unseen = sorted(set(frame["label"]) - set(labels.names))
    if unseen:
        raise HonedError(f"data: label '{unseen[0]}' is not one the model was trained on ({', '.join(labels.names)})")
    frame = model_inputs(frame, recipe)
    logits = logits_for(model, labels, recipe, frame)
    if report_dir is not None:
        from honed.evaluate.run_report import report_labelled

        report_labelled(model_dir, frame, logits, labels, recipe, report_dir)
    return classification_metrics(logits / temperature, torch.tensor(labels.encode(frame["label"])))


def _ensemble(folder: Path, calibrated: bool) -> bool:
    """True for a folder written by `honed ensemble` (ensemble.json); it has no single temperature."""
    if not (folder / "ensemble.json").is_file():
        return False
    if calibrated:
        raise HonedError(f"--calibrated: '{folder}' is an ensemble, which has no saved temperature; drop --calibrated")
    return True
