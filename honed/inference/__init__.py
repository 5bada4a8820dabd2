"""The inference layer: load anything honed saved as a Predictor and predict with it.

`load_predictor(folder)` picks the saved kind that claims the folder (a model or run folder, an
ensemble folder, a folder written by `honed export`); callers use the Predictor contract (labels,
task, recipe, predict_proba, predict) and never ask which kind they hold. A new saved kind is one
Predictor subclass plus one `SAVED_KINDS.register` line below.
"""

from __future__ import annotations

from honed.inference.base import SAVED_KINDS, Predictor, load_predictor
from honed.inference.ensemble import EnsemblePredictor, load_ensemble
from honed.inference.exported import ExportedPredictor
from honed.inference.frames import model_inputs, saved_recipe, unlabelled_frame
from honed.inference.model import ModelPredictor, model_folder
from honed.inference.predict import predict_frame
from honed.inference.sklearn import SklearnPredictor

SAVED_KINDS.register("ensemble")(EnsemblePredictor)
SAVED_KINDS.register("exported")(ExportedPredictor)
SAVED_KINDS.register("model")(ModelPredictor)
SAVED_KINDS.register("sklearn")(SklearnPredictor)

__all__ = [
    "EnsemblePredictor",
    "ExportedPredictor",
    "ModelPredictor",
    "Predictor",
    "SklearnPredictor",
    "load_ensemble",
    "load_predictor",
    "model_folder",
    "model_inputs",
    "predict_frame",
    "saved_recipe",
    "unlabelled_frame",
]
