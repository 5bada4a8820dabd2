"""A saved scikit-learn text pipeline (an ensemble's classical member, e.g. TF-IDF + logistic
regression) as a Predictor, so ensembles, `honed predict` and `honed evaluate` use it like a model.

    MEMBER_DIR/
      sklearn.json     format, the pipeline's name and parameters, its file (written last: the marker)
      pipeline.joblib  the fitted pipeline (a pickle: load trusted folders only, as meta.joblib)
      labels.json      the class order of predict_proba
      recipe.yaml      the ensemble's base recipe: how the text is read and normalised
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from honed.errors import HonedError
from honed.inference.base import Predictor
from honed.inference.frames import model_inputs, saved_recipe
from honed.recipe import Recipe

SKLEARN_FILE = "sklearn.json"
SKLEARN_FORMAT = "honed-sklearn/1"
PIPELINE_FILE = "pipeline.joblib"


def pipeline_texts(frame: pd.DataFrame, recipe: Recipe) -> list[str]:
    """The texts a pipeline reads: normalised as the recipe says; a text pair joined by a newline."""
    frame = model_inputs(frame, recipe)
    texts = frame["x"].astype(str)
    if "x2" in frame:
        texts = texts + "\n" + frame["x2"].astype(str)
    return texts.tolist()


def pipeline_proba(pipeline: Any, texts: list[str], labels: tuple[str, ...]) -> np.ndarray:
    """predict_proba with one column per label in `labels` order (a class the pipeline never saw: 0)."""
    out = np.zeros((len(texts), len(labels)))
    classes = [str(c) for c in pipeline.classes_]
    out[:, [labels.index(c) for c in classes]] = pipeline.predict_proba(texts)
    return out


class SklearnPredictor(Predictor):
    """A fitted scikit-learn pipeline over the text column, with its label order and recipe."""

    def __init__(self, pipeline: Any, labels: tuple[str, ...], recipe: Recipe, folder: Path | None = None) -> None:
        self.pipeline, self.labels, self.recipe, self.folder = pipeline, tuple(labels), recipe, folder

    @classmethod
    def claims(cls, folder: Path) -> bool:
        return (folder / SKLEARN_FILE).is_file()

    @classmethod
    def load(cls, folder: Path, overrides: dict[str, Any] | None = None) -> SklearnPredictor:
        import joblib

        try:
            doc = json.loads((folder / SKLEARN_FILE).read_text(encoding="utf-8"))
            labels = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise HonedError(
                f"sklearn member '{folder}': {SKLEARN_FILE} or labels.json is missing or damaged ({exc}); "
                "rebuild the ensemble"
            ) from None
        if not isinstance(doc, dict) or doc.get("format") != SKLEARN_FORMAT:
            raise HonedError(
                f"sklearn member '{folder}': {SKLEARN_FILE} is not format {SKLEARN_FORMAT}; rebuild the ensemble"
            )
        try:
            pipeline = joblib.load(folder / PIPELINE_FILE)  # a pickle: only folders you trust (module docstring)
        except (OSError, EOFError, ValueError, ImportError, AttributeError) as exc:
            raise HonedError(
                f"sklearn member '{folder}': {PIPELINE_FILE} does not load ({exc}); rebuild the ensemble"
            ) from None
        return cls(pipeline, tuple(labels), saved_recipe(folder, overrides), folder)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return pipeline_proba(self.pipeline, pipeline_texts(frame, self.recipe), self.labels)

    def describe(self) -> str:
        return f"sklearn pipeline {self.folder}"
