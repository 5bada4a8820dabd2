"""Stacking: a scikit-learn classifier trained on the members' out-of-fold probabilities (a regressor, Ridge by
default, on their out-of-fold predicted values for regression).

Cross-fitting (Wolpert 1992; scikit-learn's StackingClassifier): every training row's member
probabilities come from a copy of the member trained on the other k-1 folds, never from the member
that saw the row, so the meta-learner learns how far to trust each member on unseen data. At
predict time it is applied to the probabilities of the members trained on all training rows.
The meta-learner is named by a short name or an import path (`sklearn.ensemble:RandomForestClassifier`);
the `stacking` and `value_stacking` combiners (honed/inference/combiners.py) fit and apply it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import is_classifier, is_regressor
from sklearn.model_selection import StratifiedKFold

from honed.errors import HonedError, did_you_mean

META_LEARNERS = {
    "logistic_regression": "sklearn.linear_model:LogisticRegression",
    "random_forest": "sklearn.ensemble:RandomForestClassifier",
    "gradient_boosting": "sklearn.ensemble:HistGradientBoostingClassifier",
    "knn": "sklearn.neighbors:KNeighborsClassifier",
    "naive_bayes": "sklearn.naive_bayes:GaussianNB",
}
META_REGRESSORS = {
    "ridge": "sklearn.linear_model:Ridge",
    "linear_regression": "sklearn.linear_model:LinearRegression",
    "random_forest": "sklearn.ensemble:RandomForestRegressor",
    "gradient_boosting": "sklearn.ensemble:HistGradientBoostingRegressor",
    "knn": "sklearn.neighbors:KNeighborsRegressor",
}


def meta_learner(name: str, params: dict[str, Any] | None = None) -> Any:
    """An unfitted scikit-learn classifier with predict_proba; anything else is refused."""
    estimator = _build(name, params, META_LEARNERS, "sklearn.ensemble:RandomForestClassifier")
    if not is_classifier(estimator) or not hasattr(estimator, "predict_proba"):
        raise HonedError(
            f"ensemble.stacking.meta: '{name}' is not a scikit-learn classifier with predict_proba; "
            f"use one such as {', '.join(META_LEARNERS)}"
        )
    return estimator


def meta_regressor(name: str, params: dict[str, Any] | None = None) -> Any:
    """An unfitted scikit-learn regressor (regression stacking); anything else is refused."""
    classifier = name in META_LEARNERS and name not in META_REGRESSORS  # a classification short name
    estimator = None if classifier else _build(name, params, META_REGRESSORS, "sklearn.svm:SVR")
    if classifier or not is_regressor(estimator):
        raise HonedError(
            f"ensemble.stacking.meta: '{name}' is not a scikit-learn regressor; regression stacks with one "
            f"such as {', '.join(META_REGRESSORS)}"
        )
    return estimator


def _build(name: str, params: dict[str, Any] | None, short: dict[str, str], example: str) -> Any:
    """The estimator a short name (from `short`) or an import path names, built with `params`."""
    path = short.get(name, name)
    module_name, sep, attr = path.partition(":") if ":" in path else path.rpartition(".")
    if not sep or not module_name or not attr:
        raise HonedError(
            f"ensemble.stacking.meta: '{name}' is neither a short name{did_you_mean(name, short)} "
            f"nor an import path such as {example}"
        )
    try:
        factory = getattr(importlib.import_module(module_name), attr)
        estimator = factory(**(params or {}))
    except (ImportError, AttributeError) as exc:
        raise HonedError(f"ensemble.stacking.meta: cannot import '{path}' ({exc})") from exc
    except (TypeError, ValueError) as exc:
        raise HonedError(f"ensemble.stacking.params: {exc}") from exc
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


def check_fold_rows(train: pd.DataFrame, folds: int) -> None:
    """Stacking on rows with nothing to stratify on (regression targets): honed.cv folds them with KFold,
    or GroupKFold with a group column, so each fold needs a row (a group) of its own."""
    units = train["group"].nunique() if "group" in train else len(train)
    if units < folds:
        what = "groups (data.group_column)" if "group" in train else "training rows"
        raise HonedError(f"ensemble.stacking.folds: {units} {what}, fewer than {folds} folds; lower the folds")


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
