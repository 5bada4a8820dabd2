"""Stacking: a scikit-learn classifier trained on the members' out-of-fold probabilities.

Cross-fitting (Wolpert 1992; scikit-learn's StackingClassifier): every training row's member
probabilities come from a copy of the member trained on the other k-1 folds, never from the member
that saw the row, so the meta-learner learns how far to trust each member on unseen data. At
predict time it is applied to the probabilities of the members trained on all training rows.
The meta-learner is named by a short name or an import path (`sklearn.ensemble:RandomForestClassifier`);
the `stacking` combiner (honed/inference/combiners.py) fits and applies it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import is_classifier
from sklearn.model_selection import StratifiedKFold

from honed.errors import HonedError, did_you_mean

META_LEARNERS = {
    "logistic_regression": "sklearn.linear_model:LogisticRegression",
    "random_forest": "sklearn.ensemble:RandomForestClassifier",
    "gradient_boosting": "sklearn.ensemble:HistGradientBoostingClassifier",
    "knn": "sklearn.neighbors:KNeighborsClassifier",
    "naive_bayes": "sklearn.naive_bayes:GaussianNB",
}


def meta_learner(name: str, params: dict[str, Any] | None = None) -> Any:
    """An unfitted scikit-learn classifier with predict_proba; anything else is refused."""
    path = META_LEARNERS.get(name, name)
    module_name, sep, attr = path.partition(":") if ":" in path else path.rpartition(".")
    if not sep or not module_name or not attr:
        raise HonedError(
            f"ensemble.stacking.meta: '{name}' is neither a short name{did_you_mean(name, META_LEARNERS)} "
            "nor an import path such as sklearn.ensemble:RandomForestClassifier"
        )
    try:
        factory = getattr(importlib.import_module(module_name), attr)
        estimator = factory(**(params or {}))
    except (ImportError, AttributeError) as exc:
        raise HonedError(f"ensemble.stacking.meta: cannot import '{path}' ({exc})") from exc
    except (TypeError, ValueError) as exc:
        raise HonedError(f"ensemble.stacking.params: {exc}") from exc
    if not is_classifier(estimator) or not hasattr(estimator, "predict_proba"):
        raise HonedError(
            f"ensemble.stacking.meta: '{name}' is not a scikit-learn classifier with predict_proba; "
            f"use one such as {', '.join(META_LEARNERS)}"
        )
    return estimator


def check_stacking(folds: int, members: int) -> None:
    if folds < 2:
        raise HonedError(f"ensemble.stacking.folds: cross-fitting needs at least 2 folds, got {folds}")
    if members < 2:
        raise HonedError(f"ensemble.members: stacking needs at least 2 members, got {members}")


def fold_indices(labels: pd.Series, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified (train, held-out) row positions; a class with fewer rows than folds is an error."""
    counts = labels.value_counts()
    if counts.min() < folds:
        raise HonedError(
            f"ensemble.stacking.folds: class '{counts.idxmin()}' has {counts.min()} training rows, "
            f"fewer than {folds} folds; lower the folds"
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels))


def out_of_fold(
    train: pd.DataFrame,
    folds: int,
    seed: int,
    fit_predict: Callable[[int, pd.DataFrame, pd.DataFrame], np.ndarray],
    classes: int,
) -> np.ndarray:
    """(rows, classes) probabilities where each row is predicted by a fit that never saw it;
    `fit_predict(fold, train_part, held_out)` trains on train_part and predicts held_out."""
    oof = np.full((len(train), classes), np.nan)
    for fold, (fit_rows, held) in enumerate(fold_indices(train["label"], folds, seed)):
        oof[held] = fit_predict(
            fold, train.iloc[fit_rows].reset_index(drop=True), train.iloc[held].reset_index(drop=True)
        )
    return oof
