"""`FineTuneClassifier` and `FineTuneRegressor`: `honed.fit` behind scikit-learn's estimator contract.

Both share one base (`_FineTune`: the constructor parameters and the recipe they write), as
scikit-learn's stacking estimators share theirs; the classifier maps labels to honed's class names, the
regressor passes numeric targets (one column, or several for a 2-D y) and returns predicted values.

A fine-tune then slots into sklearn's tooling (`cross_val_score`, `GridSearchCV`,
`VotingClassifier`, `StackingClassifier`) like any other classifier: parameters are plain
constructor arguments, `fit(X, y)` trains and returns self, and fitted state lives in attributes
ending in `_`. Labels may be of any sortable type; honed works with str label names internally,
so the estimator maps between the two explicitly and `predict` returns the original values.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import Tags
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted
from torch import nn

from honed.errors import HonedError
from honed.fit import fit as honed_fit
from honed.inference import ModelPredictor
from honed.recipe import Recipe, build_recipe, read_yaml

DEVICES = ("auto", "cpu")


class _FineTune(BaseEstimator):
    """The parameters both estimators take and the recipe they make; `__init__` only stores them."""

    def __init__(self, *, model: str | nn.Module = "sentence-transformers/all-MiniLM-L6-v2", kind: str = "text",
                 epochs: int = 2, lr: float = 5e-5, batch_size: int = 32, max_length: int = 128, image_size: int = 224,
                 weights: str | None = None, seed: int = 42, val_fraction: float = 0.1,
                 recipe: str | Path | dict[str, Any] | Recipe | None = None, output_dir: str | Path | None = None,
                 quiet: bool = True, device: str = "auto", tokenizer: str | None = None) -> None:
        self.model = model
        self.kind = kind
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.max_length = max_length
        self.image_size = image_size
        self.weights = weights
        self.seed = seed
        self.val_fraction = val_fraction
        self.recipe = recipe
        self.output_dir = output_dir
        self.quiet = quiet
        self.device = device
        self.tokenizer = tokenizer

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # X is a sequence of texts or images, not a feature matrix
        tags.input_tags.string = self.kind == "text"
        return tags

    def _train(self, xs: list[Any], ys: list[Any], task: dict[str, Any]) -> Any:
        """honed.fit on (xs, ys) with the recipe plus `task`'s overrides; the run folder is temporary
        unless `output_dir`."""
        if self.device not in DEVICES:
            raise HonedError(f"{type(self).__name__}: device='{self.device}' is not one of {', '.join(DEVICES)}")
        folder = Path(self.output_dir) if self.output_dir is not None else Path(tempfile.mkdtemp(prefix="honed-fit-"))
        try:
            recipe = self._recipe(folder, task)
            if recipe.task == "multilabel":  # an estimator's y is one label (or value) per row
                raise HonedError(f"{type(self).__name__}: task multilabel is not supported by the estimators yet; "
                                 "use honed.fit with task: multilabel (train, evaluate and predict run it)")
            live = self.model if isinstance(self.model, nn.Module) else None
            return honed_fit(recipe, data={"train": (xs, ys)}, model=live, overwrite=True, quiet=self.quiet)
        finally:
            if self.output_dir is None:
                shutil.rmtree(folder, ignore_errors=True)

    def _recipe(self, run_dir: Path, task: dict[str, Any]) -> Recipe:
        """The base recipe with this estimator's parameters (and the task's `task` overrides) written over it."""
        base = self.recipe
        if base is None:
            tree: dict[str, Any] = {"name": "estimator"}
        elif isinstance(base, Recipe):
            tree = base.model_dump(mode="json")
        elif isinstance(base, dict):
            tree = base
        else:
            tree = read_yaml(base)
        overrides = {
            "output_dir": str(run_dir), "seed": self.seed, "model.name": self.model, "model.weights": self.weights,
            "data.kind": self.kind, "data.train": None, "data.val": None, "data.test": None,
            "data.max_length": self.max_length, "data.image_size": self.image_size, "data.split.val": self.val_fraction,
            "data.split.test": 0.0, **task,
            "optim.lr": self.lr, "train.epochs": self.epochs, "train.batch_size": self.batch_size,
        }
        if self.device == "cpu":
            overrides["train.cpu"] = True
        if isinstance(self.model, nn.Module):  # fit passes the module itself; a factory path in the recipe is kept
            del overrides["model.name"]
        if self.tokenizer is not None:
            overrides["model.tokenizer"] = self.tokenizer
        return build_recipe(tree, overrides, source=type(self).__name__)


class FineTuneClassifier(ClassifierMixin, _FineTune):
    """Fine-tune a pretrained text or image model on (X, y); predict like any sklearn classifier.

    `recipe` (a YAML path, dict or Recipe) is the base for everything the parameters do not
    name (schedule, loss, techniques, ...); the parameters always override it. Only (X, y) is
    trained on: the recipe's data files are ignored and val is carved from X (stratified).
    Fitted attributes: `classes_` (original labels, sorted), `class_names_` (honed's str name
    for each), `model_`, `labels_` (honed's LabelMap), `recipe_` and `run_` (the `honed.Run`;
    its run folder is deleted after fit unless `output_dir` is given).

    `model` is a model name (Hugging Face id or folder, torchvision/timm architecture with `weights`) or a
    live nn.Module (model.source python, see honed/models/python.py): fit trains a copy, so the parameter
    stays as given; `tokenizer` names the tokenizer of such a module for text.
    """

    def fit(self, X: Any, y: Any) -> FineTuneClassifier:
        """Fine-tune on X (texts, or image paths/arrays/PIL images) and labels y; returns self."""
        if self.device not in DEVICES:
            raise HonedError(f"FineTuneClassifier: device='{self.device}' is not one of {', '.join(DEVICES)}")
        xs, ys = as_inputs(X, self.kind, "X"), np.asarray(y)
        classes, codes = as_classes(ys, len(xs))
        names = label_names(classes)
        run = self._train(xs, [names[i] for i in codes], {"data.labels": names, "data.split.method": "stratified"})
        self.classes_, self.class_names_ = classes, names
        self.model_, self.labels_, self.recipe_, self.run_ = run.model, run.labels, run.recipe, run
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), columns in the order of `classes_`."""
        check_is_fitted(self, "model_")
        xs = as_inputs(X, self.recipe_.data.kind, "X")
        frame = pd.DataFrame({"x": pd.Series(xs, dtype=object)})
        predictor = ModelPredictor(self.model_, self.labels_, self.recipe_)  # text cleaned as in training
        probs = np.zeros((len(xs), len(self.classes_)))
        # A class whose rows all went to val is unknown to the model: its column stays 0.
        columns = [self.class_names_.index(name) for name in self.labels_.names]
        probs[:, columns] = predictor.predict_proba(frame)
        return probs

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class per row, as the original label values of `y`."""
        probs = self.predict_proba(X)  # first: it raises NotFittedError before classes_ is touched
        return self.classes_[np.argmax(probs, axis=1)]



class FineTuneRegressor(RegressorMixin, _FineTune):
    """Fine-tune a pretrained text or image model on numeric targets y; predict values like any sklearn
    regressor (`score` is R²). y is (rows,) for one target or (rows, targets) for several; targets are
    standardised on the training rows and predictions come back in y's units. Val is carved from X at
    random. Fitted attributes: `n_targets_`, `model_`, `labels_` (honed's TargetMap: names, mean, std),
    `recipe_` and `run_`. The parameters are FineTuneClassifier's."""

    def fit(self, X: Any, y: Any) -> FineTuneRegressor:
        """Fine-tune on X (texts, or image paths/arrays/PIL images) and targets y; returns self."""
        xs = as_inputs(X, self.kind, "X")
        values, names = as_targets(y, len(xs))
        run = self._train(xs, list(values), {"task": "regression", "data.labels": None, "data.split.method": "random",
                                             "data.label_column": names if len(names) > 1 else names[0]})
        self.n_targets_, self.y_ndim_ = len(names), int(np.ndim(y))
        self.model_, self.labels_, self.recipe_, self.run_ = run.model, run.labels, run.recipe, run
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted values, shape (n_samples,) when y was 1-D, else (n_samples, n_targets)."""
        check_is_fitted(self, "model_")
        xs = as_inputs(X, self.recipe_.data.kind, "X")
        frame = pd.DataFrame({"x": pd.Series(xs, dtype=object)})
        values = ModelPredictor(self.model_, self.labels_, self.recipe_).predict_values(frame)
        return values[:, 0] if self.y_ndim_ == 1 else values


def as_targets(y: Any, n_rows: int) -> tuple[np.ndarray, list[str]]:
    """y as a (rows, targets) float array and the target names (y, or y0..yK-1); non-numeric or infinite
    values are one line naming the row."""
    try:
        values = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise HonedError(f"y: regression targets must be numbers ({exc})") from exc
    if values.ndim not in (1, 2) or len(values) != n_rows:
        raise HonedError(f"y: expected {n_rows} targets (shape ({n_rows},) or ({n_rows}, k)), got shape {values.shape}")
    values = values.reshape(n_rows, -1)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise HonedError(f"y: row {int(np.argmax(bad))} holds a NaN or infinite target ({int(bad.sum())} such rows); "
                         "fill or drop them")
    return values, ["y"] if values.shape[1] == 1 else [f"y{j}" for j in range(values.shape[1])]


def as_inputs(X: Any, kind: str, field: str) -> list[Any]:
    """X as a list of rows: texts as str (missing -> ''), images as given (path, array or PIL image)."""
    if isinstance(X, str | bytes):
        raise HonedError(f"{field}: expected a sequence of {'texts' if kind == 'text' else 'images'}, "
                         "got a single string")
    if isinstance(X, pd.DataFrame):
        if X.shape[1] != 1:
            raise HonedError(f"{field}: a DataFrame must hold one column of inputs; "
                             f"it has {X.shape[1]}: {', '.join(map(str, X.columns))}")
        X = X.iloc[:, 0]
    if kind == "text" and isinstance(X, np.ndarray) and X.ndim == 2 and X.shape[1] == 1:
        X = X[:, 0]
    if kind == "text" and isinstance(X, np.ndarray) and X.ndim != 1:
        raise HonedError(f"{field}: texts must be a 1-D sequence; got an array of shape {X.shape}")
    try:
        rows = list(X)
    except TypeError as exc:
        raise HonedError(f"{field}: expected a sequence of inputs, got {type(X).__name__}") from exc
    if not rows:
        raise HonedError(f"{field}: no rows; pass at least one input")
    if kind == "text":
        return pd.Series(rows, dtype=object).fillna("").astype(str).tolist()
    return rows


def as_classes(y: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct labels of y and each row's index into them, after checking y."""
    if y.ndim != 1:
        raise HonedError(f"y: expected a 1-D sequence of labels, got shape {y.shape} (a multi-label indicator "
                         "matrix is not supported by the estimators yet: use honed.fit with task: multilabel)")
    if len(y) != n_rows:
        raise HonedError(f"X has {n_rows} rows but y has {len(y)}; pass one label per input")
    missing = pd.isna(pd.Series(y, dtype=object))
    if missing.any():
        raise HonedError(f"y: row {int(missing.idxmax())} has a missing (None/NaN) label "
                         f"({int(missing.sum())} such rows); fill or drop them")
    try:
        target = type_of_target(y)
        classes, codes = np.unique(y, return_inverse=True)
    except (TypeError, ValueError) as exc:
        raise HonedError(f"y: labels must be one sortable type (all str or all numbers): {exc}") from exc
    if target not in ("binary", "multiclass"):
        raise HonedError(f"y: labels look {target}, not classes; a classifier needs discrete labels")
    if len(classes) < 2:
        raise HonedError(f"y: only one class ({classes[0]!r}); a classifier needs two or more")
    return classes, codes


def label_names(classes: np.ndarray) -> list[str]:
    """honed's str name per class: its text (2.0 -> '2'), or 'class_i' when texts would collide."""
    names = [str(int(c)) if isinstance(c, float | np.floating) and float(c).is_integer() else str(c).strip()
             for c in classes]
    if len(set(names)) < len(names) or "" in names:
        return [f"class_{i}" for i in range(len(classes))]
    return names
