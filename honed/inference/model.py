"""A saved (or in-memory) fine-tuned model as a Predictor: its own tokenizer/transforms, the
normalisation it was trained with, test-time augmentation per `augment.tta`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from honed.data.batches import inputs_of
from honed.data.labels import LabelMap
from honed.errors import HonedError
from honed.inference.base import Predictor
from honed.inference.calibration import load_temperature, saved_temperature
from honed.inference.frames import model_inputs, saved_recipe
from honed.inference.logits import logits_for
from honed.models.base import Classifier
from honed.models.build import load_model
from honed.recipe import Recipe

MARKER = "honed.json"


def model_folder(path: str | Path, field: str) -> Path:
    """A saved model folder from a model or run folder path; a missing one is a one-line error."""
    path = Path(path)
    if (path / MARKER).is_file():
        return path
    if (path / "model" / MARKER).is_file():
        return path / "model"
    if not path.exists():
        raise HonedError(f"{field}: model folder '{path}' not found; train it first or fix the path")
    raise HonedError(f"{field}: '{path}' is not a model saved by honed (no {MARKER}); use RUN_DIR/model")


def same_preprocess(a: Any, b: Any) -> bool:
    """Tokenizers with one vocabulary, or equal normalisation statistics ((mean, std))."""
    if a is b:
        return True
    vocab_a, vocab_b = getattr(a, "get_vocab", None), getattr(b, "get_vocab", None)
    if callable(vocab_a) or callable(vocab_b):
        return callable(vocab_a) and callable(vocab_b) and type(a) is type(b) and vocab_a() == vocab_b()
    try:
        return bool(np.array_equal(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)))
    except (TypeError, ValueError):
        return False


class ModelPredictor(Predictor):
    """One classifier with its label map and recipe (loaded from a folder, or just trained)."""

    def __init__(self, model: Classifier, labels: LabelMap, recipe: Recipe, folder: Path | None = None) -> None:
        self.model, self.label_map, self.recipe, self.folder = model, labels, recipe, folder
        self.labels = labels.names
        self.task = labels.task  # a TargetMap (regression) predicts values, a LabelMap class probabilities

    @classmethod
    def claims(cls, folder: Path) -> bool:
        return (folder / MARKER).is_file() or (folder / "model" / MARKER).is_file()

    @classmethod
    def load(cls, folder: Path, overrides: dict[str, Any] | None = None) -> ModelPredictor:
        folder = model_folder(folder, "model")
        model, labels = load_model(folder)
        return cls(model, labels, saved_recipe(folder, overrides), folder)

    def logits(self, frame: pd.DataFrame) -> torch.Tensor:
        """Logits for every row, its text normalised as in training."""
        return logits_for(self.model, self.label_map, self.recipe, model_inputs(frame, self.recipe))

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        if self.task == "regression":
            raise HonedError(f"'{self.describe()}' is a {self.task} model: it predicts values (predict_values), "
                             "not class probabilities")
        return self.label_map.probabilities(self.logits(frame).double()).numpy()  # multi-label: one sigmoid each

    def predict_values(self, frame: pd.DataFrame) -> np.ndarray:
        if not hasattr(self.label_map, "decode"):
            return super().predict_values(frame)
        return self.label_map.decode(self.logits(frame).double().numpy())  # un-standardised with the training mean/std

    @torch.no_grad()
    def batch_proba(self, batch: dict[str, Any]) -> torch.Tensor:
        """Probabilities for one collated batch (the tensors a student trains on), on the batch's
        device: distillation scores augmented or mixed rows live with it."""
        inputs = inputs_of(batch)
        device = next(v.device for v in inputs.values() if isinstance(v, torch.Tensor))
        model = self.model.to(device)
        modes = {m: m.training for m in model.modules()}
        model.eval()
        try:
            return self.label_map.probabilities(model(**inputs).double())
        finally:
            for module, training in modes.items():
                module.train(training)

    def reads_like(self, preprocess: Any) -> bool:
        """Whether this model reads the inputs another model's `preprocess` makes (the same tokenizer
        vocabulary, or the same image normalisation), so its batches can be fed to this model."""
        return same_preprocess(self.model.preprocess, preprocess)

    def saved_temperature(self) -> float | None:
        return saved_temperature(self.folder) if self.folder is not None else None

    def require_temperature(self) -> float:
        if self.task == "multilabel":  # report.calibrate fits a softmax temperature: nothing a sigmoid per label uses
            raise HonedError(f"--calibrated: '{self.describe()}' is a multi-label model, which has no temperature "
                             "(its per-label thresholds, tuned on val, always apply); drop --calibrated")
        return load_temperature(self.folder) if self.folder is not None else super().require_temperature()
